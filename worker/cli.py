"""``recsae``: the whole pipeline, each stage, the demo, the explorer and the local LLM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from core.llm.client import LLMError
from core.rundir import ArtifactError
from core.settings import Settings
from worker import cli_accounts, cli_import, cli_jobs, cli_studies, cli_versions
from worker.config import DEMO_DATA, STAGES, RunConfig, recommender_modules
from worker.data.readers import READERS, DataFormatError
from worker.errors import ConfigError

# The pipeline, the models and the SAE (torch) are imported by the commands that need them, so
# `recsae --help` and `recsae serve` start in a fraction of a second.

app = typer.Typer(
    help="RecSAE Explorer: interpret and steer recommenders with TopK sparse autoencoders.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(cli_versions.app, name="versions")
app.add_typer(cli_accounts.app, name="accounts")
app.add_typer(cli_studies.app, name="studies")
app.command("import")(cli_import.import_model)
app.command("worker")(cli_jobs.worker)

DEMO_MODELS = ("bprmf", "sasrec")
DEMO_LLM_LATENTS = 6  # LLM concepts per demo model on the bundled SmolLM2: ~2 min each here
# Other explanations in each demo LLM concept's null (docs/method.md §1.11): the demo explains
# DEMO_LLM_LATENTS latents, too few for a 19-draw null, so its LLM concepts are "no null" anyway;
# 2 keeps the demo within its time floor and still shows where the null lies.
DEMO_LLM_NULL = 2
# The demo's LLM labels are background work behind the explorer, not a request: each answer may
# take this long (RECSAE_LLM_TIMEOUT_S when larger). On a busy 2-core machine one SmolLM2 answer
# to the explanation prompt took over 60 s (the request default), and the LLM pass failed.
DEMO_LLM_TIMEOUT_S = 600.0

Recommender = Annotated[
    str,
    typer.Option(
        "--recommender",
        "-r",
        help=f"A model of worker/recommenders/: {', '.join(recommender_modules())} (mostpop is "
        "the popularity floor every run reports, not a model to probe).",
    ),
]
Format = Annotated[
    str,
    typer.Option("--format", help=f"One of: {', '.join(sorted(READERS))} (a local path)."),
]
DataPath = Annotated[Path, typer.Option("--data", help="Directory of the dataset, in --format.")]
Name = Annotated[str, typer.Option("--name", help="Dataset name used in run ids.")]
Force = Annotated[bool, typer.Option("--force", help="Recompute stages already done.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of every random choice of the run.")]
Scale = Annotated[
    int,
    typer.Option(
        "--scale",
        help="SAE latents = scale x 64 (docs/method.md §1.4); 0 = automatic: 16 for sequential "
        "models, smaller when few user vectors would leave most latents dead.",
    ),
]
TopK = Annotated[int, typer.Option("--k", help="Active latents per vector (TopK).")]
Set = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a config field: recommender.FIELD=VALUE or sae.FIELD=VALUE "
        "(e.g. --set recommender.epochs=50). Repeatable.",
    ),
]


ReadOnly = Annotated[
    bool,
    typer.Option(
        "--read-only",
        help="Refuse every write (403); lets --host be public without an admin account.",
    ),
]
LLMLatents = Annotated[
    int,
    typer.Option(
        "--llm-latents",
        help="Explain this many latents with the LLM too (0: TF-IDF only). Needs "
        "RECSAE_LLM_BASE_URL, or --llm-local.",
    ),
]
LLMLocal = Annotated[
    bool,
    typer.Option("--llm-local", help="Start the bundled SmolLM2 llama.cpp server for the LLM."),
]


def _config(
    recommender: str,
    fmt: str,
    data: Path,
    name: str,
    seed: int,
    scale: int,
    k: int,
    overrides: list[str] | None,
    llm_latents: int = 0,
    llm_local: bool = False,
) -> RunConfig:
    from worker.recommenders import REGISTRY

    probed = sorted(name for name, cls in REGISTRY.items() if cls.probed)
    if recommender not in probed:
        raise typer.BadParameter(
            f"unknown recommender {recommender!r}; choose one of {probed}"
            if recommender not in REGISTRY
            else f"{recommender!r} is a baseline, not a model to probe; choose one of {probed}",
            param_hint="--recommender",
        )
    rec: dict = {}
    sae: dict = {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot or section not in ("recommender", "sae"):
            raise typer.BadParameter(
                f"{item!r}: expected recommender.FIELD=VALUE or sae.FIELD=VALUE", param_hint="--set"
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        (rec if section == "recommender" else sae)[field] = value
    _check_fields(recommender, rec, sae)
    return RunConfig(
        recommender=recommender,
        dataset_format=fmt,
        dataset_path=str(data),
        dataset_name=name,
        seed=seed,
        sae_scale=scale,
        sae_k=k,
        recommender_overrides=rec,
        sae_overrides=sae,
        llm_latents=llm_latents,
        llm_local=llm_local,
    )


def _check_fields(recommender: str, rec: dict[str, object], sae: dict[str, object]) -> None:
    """``--set`` names only fields the model's config and the SAE's config have (before any
    stage runs, not minutes later in the stage that reads them)."""
    from worker.recommenders.train import default_config
    from worker.sae.train import SAEConfig

    try:
        default_config(recommender, **rec)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--set") from err
    known = {f.name for f in fields(SAEConfig)}
    unknown = sorted(set(sae) - known)
    if unknown:
        raise typer.BadParameter(
            f"the SAE has no config field(s) {unknown}; its fields: {sorted(known)}",
            param_hint="--set",
        )


@app.command()
def run(
    recommender: Recommender = "sasrec",
    fmt: Format = "movielens-latest",
    data: DataPath = DEMO_DATA,
    name: Name = "ml-latest-small",
    seed: Seed = 0,
    scale: Scale = 0,
    k: TopK = 8,
    overrides: Set = None,
    llm_latents: LLMLatents = 0,
    llm_local: LLMLocal = False,
    sweep: Annotated[
        bool, typer.Option("--sweep", help="Also train the s x k sensitivity sweep (9 SAEs).")
    ] = False,
    title_words: Annotated[
        bool,
        typer.Option(
            "--tfidf-title-words",
            help="TF-IDF terms from titles too, not only genres/tags/text (docs/method.md §1.8).",
        ),
    ] = False,
    llm_null: Annotated[
        int,
        typer.Option(
            "--llm-null",
            help="Other explanations verified on each LLM latent's cases for its null "
            "(docs/method.md §1.11); each costs 2N requests; below 19 no LLM concept can "
            "be verified (a 5% rank test needs 19 draws).",
        ),
    ] = 19,
    stage: Annotated[
        list[str] | None,
        typer.Option("--stage", help=f"Run only these stages (repeatable): {', '.join(STAGES)}."),
    ] = None,
    force: Force = False,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="Train the recommender and the SAE on this torch device: cpu (default), cuda, "
            "cuda:N or mps; the rest runs on the CPU (RECSAE_DEVICE; docs/scaling.md).",
        ),
    ] = None,
) -> None:
    """Run the pipeline (or some stages) for one recommender on one dataset, then publish it."""
    _use_device(device)
    if not data.exists():
        raise typer.BadParameter(
            f"{data} does not exist: give the dataset's directory", param_hint="--data"
        )
    config = _config(
        recommender, fmt, data, name, seed, scale, k, overrides, llm_latents, llm_local
    )
    config.sweep = sweep
    config.tfidf_title_words, config.llm_null = title_words, llm_null
    stages = tuple(stage) if stage else STAGES
    from worker.pipeline import run_pipeline

    _run_or_explain(lambda: run_pipeline(config, stages=stages, force=force))


def _use_device(device: str | None) -> None:
    """Check ``--device`` (or RECSAE_DEVICE) before any stage runs, and hand it to the stages."""
    from core.settings import get_settings
    from worker.device import resolve_device

    try:
        resolve_device(device if device is not None else get_settings().device)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--device") from err
    if device is not None:
        os.environ["RECSAE_DEVICE"] = device
        get_settings.cache_clear()


def _run_or_explain(fn: Callable[[], object]) -> None:
    """Run ``fn``; errors a user can fix (bad data, no LLM, a missing file, an unknown name or
    config field) print one line. Anything else is a bug and keeps its traceback."""
    try:
        fn()
    except (DataFormatError, LLMError, ConfigError, ArtifactError, FileNotFoundError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from err


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    force: Force = False,
    serve_only: Annotated[bool, typer.Option(help="Skip the pipeline; just serve.")] = False,
    llm_latents: Annotated[
        int,
        typer.Option(
            "--llm-latents",
            help="Latents to explain with the LLM per model: RECSAE_LLM_BASE_URL if set, else "
            "the bundled SmolLM2 (0: TF-IDF only).",
        ),
    ] = DEMO_LLM_LATENTS,
    read_only: ReadOnly = False,
) -> None:
    """Serve the explorer at once and run the pipeline on the shipped demo data for BPRMF and
    SASRec behind it, in a child process; Ctrl-C stops both.

    Each run is published first with its TF-IDF concepts; the LLM labels come last, as a new
    published version (worker/demo.py). The home page shows each run's progress. Without
    RECSAE_LLM_BASE_URL the bundled SmolLM2 server is started on loopback for both the
    pipeline's LLM concepts and the explorer's "Explain with the LLM" button.
    """
    import contextlib

    from core.settings import get_settings

    settings = get_settings()
    cli_accounts.check_public_host(host, settings, read_only)  # before anything starts
    with contextlib.ExitStack() as stack:
        if settings.llm_base_url is None:
            from core.llm.server import LocalLLM
            from core.net import free_port

            llm = stack.enter_context(LocalLLM(port=free_port(), threads=2))
            settings = settings.model_copy(
                update={"llm_base_url": llm.base_url, "llm_model": llm.alias}
            )
            typer.echo(f"local LLM (SmolLM2-135M, llama.cpp) at {llm.base_url}")
        pipelines = [sys.executable, "-m", "worker.cli", "demo-pipelines", "--llm-latents",
                     str(llm_latents)] + (["--force"] if force else [])  # fmt: skip
        typer.echo(f"RecSAE Explorer on http://{host}:{port}  (API: http://{host}:{port}/docs)")
        if not serve_only:
            typer.echo("the demo pipelines run behind it; the home page shows their progress")
        # no line per request: the home page polls while the pipelines log to this terminal
        _serve(
            host, port, settings=settings, read_only=read_only,
            beside=[] if serve_only else [pipelines], access_log=serve_only,
        )  # fmt: skip


@app.command("demo-pipelines", hidden=True)
def demo_pipelines(
    llm_latents: Annotated[int, typer.Option("--llm-latents")] = DEMO_LLM_LATENTS,
    force: Force = False,
) -> None:
    """The demo's pipelines (``recsae demo`` runs this behind the explorer): BPRMF then SASRec,
    each published with its TF-IDF concepts first, the LLM labels last (worker/demo.py)."""
    from core.settings import get_settings
    from worker.demo import run_demo

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # the progress file then says "stopped"

    signal.signal(signal.SIGTERM, stop)
    # a null of 2 other explanations per latent (docs/method.md §1.11): 20 more SmolLM2
    # requests per latent keep the demo under its time floor
    configs = [
        RunConfig(recommender=name, llm_latents=llm_latents, llm_null=DEMO_LLM_NULL)
        for name in DEMO_MODELS
    ]
    try:
        settings = get_settings()
        timeout = max(settings.llm_timeout_s, DEMO_LLM_TIMEOUT_S)
        settings = settings.model_copy(update={"llm_timeout_s": timeout})
        _run_or_explain(partial(run_demo, configs, settings, force=force))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes (steering is CPU-bound).")] = 1,
    read_only: ReadOnly = False,
    job_worker: Annotated[
        bool,
        typer.Option(
            "--job-worker/--no-job-worker",
            help="Start one `recsae worker` beside the server for 'Explain with the LLM' "
            "(--no-job-worker: they run elsewhere, e.g. compose's jobs service).",
        ),
    ] = True,
) -> None:
    """Serve the explorer (FastAPI) on the configured database, with one job worker beside it."""
    from core.settings import get_settings

    cli_accounts.check_public_host(host, get_settings(), read_only)
    typer.echo(f"RecSAE Explorer on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    _serve(host, port, workers=workers, read_only=read_only, job_worker=job_worker)


def _serve(
    host: str,
    port: int,
    workers: int = 1,
    settings: Settings | None = None,
    read_only: bool = False,
    beside: Sequence[Sequence[str]] = (),
    access_log: bool = True,
    job_worker: bool = True,
) -> None:
    """Start the backend by its import string (``python -m backend.serve``) in a child process,
    and the commands ``beside`` (the demo's pipelines) and, with ``job_worker`` unless read-only,
    one ``recsae worker`` (the explorer's LLM jobs, docs/jobs.md) once it listens.

    The worker never imports the backend (docs/architecture.md); ``settings`` reach the
    children as the ``RECSAE_*`` variables they read, as every server process of the explorer
    does. Each child runs in its own session and every SIGINT (Ctrl-C) or SIGTERM (``docker
    stop``) we get is passed on to each still running, so all shut down cleanly when we are
    stopped; when the server ends, the children still running beside it get SIGTERM. A child
    ``beside`` that ends by itself (the pipelines, done) leaves the server serving.
    """
    env = dict(os.environ)
    if settings is not None:
        env.update(settings.as_environment())
    cmd = [sys.executable, "-m", "backend.serve", "--host", host, "--port", str(port),
           "--workers", str(workers)] + (["--read-only"] if read_only else [])  # fmt: skip
    cmd += [] if access_log else ["--no-access-log"]
    if job_worker and not read_only:  # one `recsae worker`: the LLM jobs (docs/jobs.md)
        beside = [cli_jobs.WORKER_COMMAND, *beside]
    server = subprocess.Popen(cmd, env=env, start_new_session=True)
    children = [server]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if beside and _listening(host, port, server):
            children += [subprocess.Popen(c, env=env, start_new_session=True) for c in beside]
        code = server.wait()
        for child in children[1:]:
            if child.poll() is None:
                child.terminate()
            child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise typer.Exit(code)


def _listening(host: str, port: int, server: subprocess.Popen[bytes]) -> bool:
    """Wait until ``server`` accepts connections on ``host:port`` (True) or exits (False), so
    what starts beside it does not slow its first page (2 cores: the first page comes first)."""
    import socket
    import time

    address = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    while server.poll() is None:
        try:
            with socket.create_connection((address, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


@app.command("llm-server")
def llm_server(
    port: Annotated[int, typer.Option(help="Loopback port of the OpenAI-compatible API.")] = 8080,
    threads: Annotated[int, typer.Option(help="CPU threads for llama.cpp.")] = 2,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A .gguf file, or a bundled model by name: smollm2-135m (the default), "
            "gemma3-270m (docs/llm.md).",
        ),
    ] = None,
) -> None:
    """Start the local llama.cpp server on 127.0.0.1 in the foreground: a bundled model (default
    SmolLM2-135M-Instruct) or any GGUF file.

    Then set RECSAE_LLM_BASE_URL=http://127.0.0.1:PORT/v1 for the worker and the explorer.
    """
    from core.llm.server import main, resolve_model

    try:
        path = resolve_model(model)
    except (FileNotFoundError, ValueError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from err
    main(["--port", str(port), "--threads", str(threads), "--model", str(path)])


if __name__ == "__main__":
    app()
