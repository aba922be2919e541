"""The worker at the paper's scale and on a busy machine (issue 12).

1. Writes MovieLens-1M-shaped synthetic data (6,040 users, 3,706 items, 1,000,209 interactions;
   ``--large``: 30,000 x 20,000 x 2.5M; ``--quick``: 600 x 1,000 x 60k with few epochs, to check
   the script in a minute or two) in the generic layout (``worker.data.synthetic``).
2. Runs the whole pipeline without the LLM for each model (``recsae run --format generic``), each
   in its own process, and reads each stage's wall seconds from the run directory, the process's
   peak RSS (``os.wait4``), SASRec's seconds per epoch (training seconds / epochs, dev
   evaluations every 5 epochs included) and the SAE's training vectors per second.
3. Measures, in fresh processes, a fixed SAE training (the SASRec run's training vectors, the
   run's SAE shape) and one SASRec epoch on an idle machine, then beside one busy process per
   core (``while True: pass``) that it starts and stops itself; prints the slowdowns, and the
   same busy runs on one fixed thread (the floor the automatic thread count must not lose to).

    .venv/bin/python benchmarks/scale.py            # ML-1M shape (~15 min per model, 2 cores)
    .venv/bin/python benchmarks/scale.py --quick    # a minute or two
    .venv/bin/python benchmarks/scale.py --large    # 30k users x 20k items x 2.5M

Runs live in a temporary data directory (``--data-dir`` to keep them). The last line printed is
one JSON object: shape, models.<name>.{stages.<stage>.seconds, pipeline_seconds, peak_rss_mb,
sae_vectors_per_second}, models.sasrec.epoch_seconds, busy.{sae_slowdown,
sasrec_epoch_slowdown} (the issue's keys), and beside them busy.{sae_vs_one_thread,
sasrec_epoch_vs_one_thread, threads_chosen, seconds} and host_reference_seconds.{before, after}
(a fixed one-thread workload: how fast the host was; compare runs by it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core import rundir  # noqa: E402
from worker.config import STAGES  # noqa: E402

SHAPES: dict[str, dict[str, Any]] = {
    "quick": dict(n_users=600, n_items=1000, n_interactions=60_000, min_history=20,
                  max_history=600, history_sigma=1.0),
    "ml1m": dict(n_users=6040, n_items=3706, n_interactions=1_000_209, min_history=20,
                 max_history=2314, history_sigma=1.0),
    "large": dict(n_users=30_000, n_items=20_000, n_interactions=2_500_000, min_history=20,
                  max_history=5000, history_sigma=1.0),
}  # fmt: skip
# --quick caps training so the whole script takes a minute or two; the other shapes run as a
# user would (the models' tuned defaults, early stopping).
QUICK_SETS = [
    "recommender.epochs=3",
    "recommender.eval_every=1",
    "sae.max_epochs=3",
    "sae.max_steps=200",
]
QUICK_SAE_STEPS, SAE_STEPS = 20, 500  # the busy comparison's fixed SAE training


def log(line: str) -> None:
    print(line, flush=True)


def write_data(shape: str, directory: Path, seed: int) -> dict[str, Any]:
    from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv

    start = time.perf_counter()
    raw, _ = generate(SyntheticConfig(seed=seed, **SHAPES[shape]))
    write_generic_csv(raw, directory)
    log(f"data: {shape} shape written to {directory} in {time.perf_counter() - start:.1f}s")
    return {
        "name": shape,
        "users": SHAPES[shape]["n_users"],
        "items": SHAPES[shape]["n_items"],
        "interactions": len(raw.interactions),
    }


def run_child(cmd: list[str], env: dict[str, str], prefix: str) -> float:
    """Run ``cmd``, echo its stdout lines with ``prefix``; returns its peak RSS in MB."""
    child = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert child.stdout is not None
    for line in child.stdout:
        if "%|" not in line:  # progress bars (tqdm) stay out of the log
            log(f"{prefix}{line.rstrip()}")
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {child.returncode}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def child_env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "RECSAE_DATA_DIR": str(data_dir), "TQDM_DISABLE": "1"}


def run_model(model: str, args: argparse.Namespace, data: Path, name: str) -> dict[str, Any]:
    """The whole pipeline for ``model`` in its own process; its figures from the run dir."""
    cmd = [sys.executable, "-m", "worker.cli", "run", "--recommender", model,
           "--format", "generic", "--data", str(data), "--name", name, "--seed", str(args.seed),
           "--llm-latents", "0", "--force"]  # fmt: skip
    for item in QUICK_SETS if args.quick else []:
        cmd += ["--set", item]
    log(f"{model}: pipeline ...")
    start = time.perf_counter()
    peak_mb = run_child(cmd, child_env(args.data_dir), f"  {model} | ")
    wall = time.perf_counter() - start
    run_dir = args.data_dir / "runs" / f"{name}-{model}"
    stages = {}
    for stage in STAGES:
        marker = run_dir / rundir.done_marker(stage)
        if marker.exists():
            stages[stage] = {"seconds": json.loads(marker.read_text())["seconds"]}
    rec = json.loads((run_dir / rundir.RECOMMENDER_REPORT).read_text())
    sae = json.loads((run_dir / rundir.SAE_REPORT).read_text())
    out: dict[str, Any] = {
        "stages": stages,
        "pipeline_seconds": sum(s["seconds"] for s in stages.values()),
        "peak_rss_mb": peak_mb,
        "sae_vectors_per_second": sae["vectors_per_second"],
    }
    if model == "sasrec":
        out["epoch_seconds"] = rec["train_seconds"] / max(1, rec["epochs_run"])
    log(
        f"{model}: pipeline {out['pipeline_seconds']:.1f}s (process {wall:.1f}s), peak RSS "
        f"{peak_mb:.0f} MB, test NDCG@10 {rec['test']['ndcg@10']:.4f}, SAE held-out FVU "
        f"{sae['fvu_test']:.3f}, {sae['vectors_per_second']:,.0f} SAE vectors/s"
        + (f", {out['epoch_seconds']:.1f}s per epoch" if model == "sasrec" else "")
    )
    return out


def measure(kind: str, run_dir: Path, threads: int, steps: int) -> dict[str, Any]:
    """In this (child) process: seconds of ``steps`` SAE steps or of one SASRec epoch, and the
    torch thread counts the governor applied (worker/threads.py)."""
    import numpy as np
    import torch

    from worker.artifacts import ProbeArrays
    from worker.cases import DEV, TRAIN
    from worker.data.dataset import Dataset
    from worker.recommenders.train import (
        build_recommender,
        default_config,
        train_epoch,
        training_governor,
    )
    from worker.sae.train import SAEConfig, train_sae

    if kind == "sae":
        probe = ProbeArrays.load(run_dir)
        side = probe.cases.side
        saved = json.loads((run_dir / rundir.SAE_REPORT).read_text())["config"]
        sae_config = SAEConfig(scale=saved["scale"], k=saved["k"], batch_size=saved["batch_size"],
                               lr=saved["lr"], max_steps=steps, threads=threads)  # fmt: skip
        _, report = train_sae(probe.reps[side == TRAIN], probe.reps[side == DEV], sae_config,
                              progress=False)  # fmt: skip
        return {"seconds": float(report["train_seconds"]), "threads": report["threads"]}
    dataset = Dataset.load(run_dir / rundir.DATASET_DIR)
    config = default_config("sasrec", threads=threads)
    torch.manual_seed(config.seed)
    model = build_recommender("sasrec", dataset.n_users, dataset.n_items, config)
    model.prepare(dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    gov = training_governor(threads, type(model))  # as train_recommender's
    start = time.perf_counter()
    train_epoch(model, optimizer, dataset, np.random.default_rng(config.seed))
    return {"seconds": time.perf_counter() - start, "threads": gov.history}


def measure_child(
    kind: str, run_dir: Path, threads: int, steps: int, data_dir: Path
) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_measure", kind, "--_run-dir",
           str(run_dir), "--_threads", str(threads), "--_steps", str(steps)]  # fmt: skip
    env = child_env(data_dir)
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, text=True, capture_output=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# A fixed one-thread torch workload timed in a fresh process before and after the runs: this
# project's shared host ran the same code up to 1.6x slower from one hour to the next (a SASRec
# epoch 12.5 s, then 20 s; no steal time shown), so each run says how fast the host was.
REFERENCE_CODE = """
import time, torch
torch.set_num_threads(1)
a = torch.randn(384, 384, generator=torch.Generator().manual_seed(0))
for _ in range(20):
    a @ a
start = time.perf_counter()
for _ in range(400):
    a @ a
print(time.perf_counter() - start)
"""


def reference_seconds() -> float:
    """Seconds of ``REFERENCE_CODE``'s 400 one-thread 384x384 products (0.31-0.33 s on this
    host, 2026-12-01)."""
    out = subprocess.run([sys.executable, "-c", REFERENCE_CODE], check=True, text=True,
                         capture_output=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def busy_loops(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def busy_comparison(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Idle vs beside one busy loop per usable core, automatic threads; one fixed thread beside
    the loops as the floor. Each is measured ``--repeats`` times in fresh processes (automatic and
    one thread alternating, so a drift of the machine hits both) and the median is kept."""
    from worker.threads import usable_cores

    steps = QUICK_SAE_STEPS if args.quick else SAE_STEPS
    cores = usable_cores()
    runs: dict[str, list[float]] = {}
    chosen: dict[str, list[int]] = {}

    def one(kind: str, label: str, threads: int) -> None:
        got = measure_child(kind, run_dir, threads, steps, args.data_dir)
        runs.setdefault(f"{kind}_{label}", []).append(got["seconds"])
        chosen.setdefault(f"{kind}_{label}", []).extend(got["threads"])
        log(f"busy: {kind} {label}: {got['seconds']:.2f}s (threads {got['threads']})")

    for _ in range(args.repeats):
        for kind in ("sae", "sasrec"):
            one(kind, "idle", 0)
    loops = busy_loops(cores)
    try:
        time.sleep(1.0)  # let them take the cores before the measured process looks
        for rep in range(args.repeats):
            order = ((0, "busy"), (1, "busy_one_thread"))
            for kind in ("sae", "sasrec"):
                for threads, label in order if rep % 2 == 0 else order[::-1]:
                    one(kind, label, threads)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    med = {key: statistics.median(values) for key, values in runs.items()}
    log(
        f"busy: medians of {args.repeats} (s): "
        + json.dumps({k: round(v, 2) for k, v in med.items()})
    )
    return {
        "sae_slowdown": med["sae_busy"] / med["sae_idle"],
        "sasrec_epoch_slowdown": med["sasrec_busy"] / med["sasrec_idle"],
        # automatic threads beside the loops vs one fixed thread there (<= 1: never slower,
        # within the machine's noise: each run's seconds are in ``seconds``)
        "sae_vs_one_thread": med["sae_busy"] / med["sae_busy_one_thread"],
        "sasrec_epoch_vs_one_thread": med["sasrec_busy"] / med["sasrec_busy_one_thread"],
        "threads_chosen": {key: sorted(set(values)) for key, values in chosen.items()},
        "seconds": runs,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    quick = "600 users x 1,000 items x 60k, 3 epochs: checks the script"
    size.add_argument("--quick", action="store_true", help=quick)
    size.add_argument("--large", action="store_true", help="30,000 x 20,000 x 2.5M interactions")
    parser.add_argument("--models", nargs="+", default=["bprmf", "sasrec"],
                        choices=["bprmf", "sasrec"], help="recommenders to run")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="data and run seed")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data and runs (default: a new temp dir)"
    )
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-machine runs")
    parser.add_argument("--busy-only", action="store_true",
                        help="only the busy comparison, on the SASRec run an earlier run of this "
                        "script left in --data-dir")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2,
                        help="measurements of each busy-comparison case (median kept)")  # fmt: skip
    for hidden in ("--_measure", "--_run-dir", "--_threads", "--_steps"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args._measure:
        measured = measure(args._measure, Path(args._run_dir), int(args._threads), int(args._steps))
        print(json.dumps(measured))
        return
    # a SIGTERM (timeout, Ctrl-C's cousin) still runs the finally that stops the busy loops
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    shape = "quick" if args.quick else "large" if args.large else "ml1m"
    args.data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="recsae-scale-"))).resolve()
    data = args.data_dir / f"synthetic-{shape}"
    name = f"scale-{shape}"
    result: dict[str, Any] = {"models": {}}
    if args.busy_only:
        if not (args.data_dir / "runs" / f"{name}-sasrec" / rundir.SAE_REPORT).exists():
            raise SystemExit(
                f"--busy-only needs a finished SASRec run in {args.data_dir}/runs/{name}-sasrec:"
                " pass the --data-dir of an earlier run of this script"
            )
        args.models = []
        result["shape"] = {"name": shape, "busy_only": True}
    else:
        result["shape"] = write_data(shape, data, args.seed)
    result["host_reference_seconds"] = {"before": reference_seconds()}
    log(f"host: reference workload {result['host_reference_seconds']['before']:.2f}s")
    for model in args.models:
        result["models"][model] = run_model(model, args, data, name)
    if args.busy_only or not args.no_busy:
        if "sasrec" not in args.models and not args.busy_only:
            raise SystemExit("the busy comparison needs the SASRec run: add sasrec to --models")
        result["busy"] = busy_comparison(args, args.data_dir / "runs" / f"{name}-sasrec")
    result["host_reference_seconds"]["after"] = reference_seconds()
    log(f"host: reference workload {result['host_reference_seconds']['after']:.2f}s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
