"""``recsae import DIR --name NAME [--sae SAE_DIR]``: explain and steer a recommender trained
elsewhere (docs/import.md). The directory is checked before any stage runs; a refusal prints
what to fix (file, row) and writes nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def import_model(
    directory: Annotated[
        Path, typer.Argument(help="The import directory: manifest.json and the files it names.")
    ],
    name: Annotated[str, typer.Option("--name", help="The run id of the imported model.")],
    sae: Annotated[
        Path | None,
        typer.Option(
            "--sae",
            help="A TopK SAE trained elsewhere, in SAELens's layout (cfg.json + "
            "sae_weights.safetensors), used instead of training one.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random choice.")] = 0,
    scale: Annotated[
        int, typer.Option("--scale", help="SAE latents = scale x d (0: automatic).")
    ] = 0,
    k: Annotated[int, typer.Option("--k", help="Active latents per vector (TopK).")] = 8,
    llm_latents: Annotated[
        int, typer.Option("--llm-latents", help="Latents to explain with the LLM (0: none).")
    ] = 0,
    llm_local: Annotated[
        bool, typer.Option("--llm-local", help="Start the bundled SmolLM2 server for the LLM.")
    ] = False,
) -> None:
    """Import a recommender trained elsewhere (its vectors), then run the SAE, record,
    interpret, evaluate and publish on it as for our own models."""
    from worker.cli import _run_or_explain
    from worker.importer import import_run

    start = time.perf_counter()
    _run_or_explain(
        lambda: import_run(
            directory,
            name,
            sae,
            seed=seed,
            sae_scale=scale,
            sae_k=k,
            llm_latents=llm_latents,
            llm_local=llm_local,
        )  # fmt: skip
    )
    typer.echo(f"imported {name} in {time.perf_counter() - start:.0f} s; recsae serve shows it")
