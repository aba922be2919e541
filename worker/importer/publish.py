"""Publishing an import (docs/import.md): the checked import written as the normalised copy the
``imported`` reader and recommender load, under a run id that changes no other run, and every
stage after the recommender's training run on it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.numpy import save_file

from core import atomic
from core.rundir import SAE_CFG, SAE_WEIGHTS
from core.settings import Settings, get_settings
from worker.config import RunConfig
from worker.data.readers.imported import INTERACTIONS, ITEMS, META
from worker.importer.export import PREPARE, CheckedImport, check_import
from worker.importer.formats import ImportRefused
from worker.importer.model import RANKING
from worker.recommenders.imported import IDS, VECTORS

if TYPE_CHECKING:
    from worker.run import Run


def write_normalised(checked: CheckedImport, target: Path) -> Path:
    """Write the checked import into ``target`` (a fresh directory): what the ``imported`` reader
    and recommender read. Written into a temporary sibling and renamed, so a half-written
    directory is never taken for a complete one."""
    target = Path(target)
    if (target / META).is_file():
        return target  # the same digest: the same content, written before
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    checked.interactions.to_csv(partial / INTERACTIONS, index=False)
    if checked.items_meta is not None:
        checked.items_meta.to_csv(partial / ITEMS, index=False)
    save_file({"item_emb": checked.item_emb, "case_reps": checked.case_reps},
              str(partial / VECTORS))  # fmt: skip
    ids = {
        "items": checked.item_ids,
        "case_users": checked.case_users,
        "case_positions": checked.case_positions.tolist(),
    }
    (partial / IDS).write_text(json.dumps(ids))
    checked.ranking.to_csv(partial / RANKING, index=False)
    meta = {
        "manifest": checked.manifest,
        "source": str(checked.directory.resolve()),
        "digest": checked.digest,
        "dataset": str(checked.manifest.get("dataset") or checked.directory.name),
        "description": checked.manifest["description"],
        "score": "dot+bias" if checked.bias else "dot",
        "sequential": checked.sequential,
        "split_column": checked.split_column,
        "item_category": checked.manifest.get("item_category", "items"),
        "item_name": checked.manifest.get("item_name", "item"),
        "d": checked.d,
        "ranking_check": {k: v for k, v in checked.ranking_result.items() if k != "first_mismatch"},
        "metrics_check": checked.metrics_check,
        "sae": None,
    }
    if checked.sae is not None and checked.sae_cfg is not None:
        (partial / "sae").mkdir()
        (partial / "sae" / SAE_CFG).write_text(json.dumps(checked.sae_cfg, indent=2))
        save_file(checked.sae, str(partial / "sae" / SAE_WEIGHTS))
        meta["sae"] = {key: checked.sae_cfg[key] for key in ("d_in", "d_sae", "k", "imported_from")}
    atomic.write_text(partial / META, json.dumps(meta, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


IMPORTED_NAMES = ("imported", "imported-sequential")


def existing_run_problem(run_id: str, settings: Settings) -> str | None:
    """Why importing as ``run_id`` would change another run (None: it may). A run of our own
    models under that id is never overwritten; an earlier import under it gets a new version."""
    config = settings.runs_dir / run_id / "config.json"
    if config.is_file():
        recommender = json.loads(config.read_text()).get("recommender")
        if recommender not in IMPORTED_NAMES:
            return (
                f"run {run_id!r} exists and holds {recommender!r}, not an imported model; "
                "choose another --name (importing never changes another run)"
            )
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    from core.store import reads
    from core.store.engine import session_factory
    from core.store.migrate import upgrade

    upgrade(url)
    with session_factory(url)() as session:
        row = reads.get_run(session, run_id)
    if row is not None and row.recommender not in IMPORTED_NAMES:
        return (
            f"run {run_id!r} is published with {row.recommender!r}, not an imported model; "
            "choose another --name"
        )
    return None


def import_config(checked: CheckedImport, target: Path, run_id: str, **options: Any) -> RunConfig:
    """The run of an imported model: its data kept as it is, its vectors fixed."""
    return RunConfig(
        recommender=IMPORTED_NAMES[int(checked.sequential)],
        dataset_format="imported",
        dataset_path=str(target),
        dataset_name=str(checked.manifest.get("dataset") or run_id),
        run_id=run_id,
        rating_threshold=PREPARE.rating_threshold,
        k_core=PREPARE.k_core,
        recommender_overrides={
            "source": str(target),
            "n_cases": len(checked.case_reps),
            "emb_size": checked.d,
            "description": str(checked.manifest["description"]),
        },
        **options,
    )


def import_run(
    directory: str | Path,
    run_id: str,
    sae_dir: str | Path | None = None,
    settings: Settings | None = None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> Run:
    """Check ``directory`` (refusing before anything is written), copy it into the run
    directory and run every stage after the recommender's training on it, publish included."""
    from worker.pipeline import run_pipeline

    settings = settings or get_settings()
    problem = existing_run_problem(run_id, settings)
    if problem is not None:
        raise ImportRefused(problem)
    checked = check_import(directory, sae_dir)
    log(
        f"[{run_id}] import checked: {len(checked.dataset.item_ids):,} items, "
        f"{checked.dataset.n_users:,} users, {len(checked.case_reps):,} representations "
        f"(d = {checked.d}{', bias as the last dimension' if checked.bias else ''}); top 10 "
        f"reproduced for {checked.ranking_result['reproduced']:.0%} of "
        f"{checked.ranking_result['users']} users"
    )
    target = settings.runs_dir / run_id / "import" / checked.digest[:16]
    write_normalised(checked, target)
    return run_pipeline(import_config(checked, target, run_id, **options), settings, log=log)
