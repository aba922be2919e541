"""Bring your own model, in a real browser (docs/import.md): a TruncatedSVD made here by
scikit-learn, exported by examples/svd_export.py, imported into a data directory of its own and
served; the user page lists sklearn's own top 10 (its scores from the exported files, history
masked) and moving a slider re-ranks the list without a reload."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backend.serve import background_server
from core.settings import Settings
from tests.e2e.conftest import guarded_page
from worker.data.synthetic import SyntheticConfig, generate
from worker.importer import import_run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from svd_export import export_svd  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]
RUN = "svd-e2e"
USER = 3


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Any, Path]:
    raw, _ = generate(SyntheticConfig(n_users=200, n_items=80, n_tags=4, mean_history=15, seed=4))
    items = raw.items.copy()
    for column in ("genres", "tags"):
        items[column] = ["|".join(v) for v in items[column]]
    exported = tmp_path_factory.mktemp("svd-e2e") / "import"
    export_svd(raw.interactions[["user", "item", "timestamp"]], exported, d=12, seed=0,
               items=items, description="sklearn SVD for the browser")  # fmt: skip
    settings = Settings(data_dir=tmp_path_factory.mktemp("svd-e2e-data"))
    run = import_run(
        exported, RUN, settings=settings, log=lambda _: None, sae_scale=2, sae_k=4,
        sae_fold_ins=4, sae_overrides={"max_epochs": 20}, tuning=False,
    )  # fmt: skip
    return settings, run, exported


@pytest.fixture
def import_page(browser: object, imported: tuple[Settings, Any, Path]) -> Iterator[object]:
    with background_server(imported[0]) as base, guarded_page(browser, base) as pg:
        yield pg


def sklearn_top10(exported: Path, run: Any, user: int) -> list[str]:
    """The exported SVD's own top 10 item ids for the dataset's ``user`` (numpy on the export's
    files, float64), the user's train and dev items masked as the explorer masks them."""
    users = pd.read_csv(exported / "user_ids.csv", dtype=str)["user"].tolist()
    item_ids = pd.read_csv(exported / "item_ids.csv", dtype=str)["item"].tolist()
    u = np.load(exported / "users.npy").astype(np.float64)
    v = np.load(exported / "items.npy").astype(np.float64)
    dataset = run.dataset
    scores = v @ u[users.index(dataset.user_ids[user])]
    history = {dataset.item_ids[i] for i in dataset.sequences[user][:-1]}
    scores[[j for j, item in enumerate(item_ids) if item in history]] = -np.inf
    return [item_ids[j] for j in np.argsort(-scores, kind="stable")[:10]]


def shown(pg: Any) -> list[int]:
    return [int(i) for i in pg.locator("#steered-list li").evaluate_all(
        "els => els.map(e => e.dataset.idx)")]  # fmt: skip


def test_an_imported_svd_is_shown_and_steered_in_the_browser(
    import_page: Any, imported: tuple[Settings, Any, Path]
) -> None:
    from playwright.sync_api import expect

    _, run, exported = imported
    pg = import_page
    pg.goto(f"/runs/{RUN}")
    expect(pg.locator("main")).to_contain_text("sklearn SVD for the browser")
    pg.goto(f"/runs/{RUN}/users/{USER}")
    before = shown(pg)
    assert [run.dataset.item_ids[i] for i in before] == sklearn_top10(exported, run, USER)
    pg.evaluate("window.__noReload = true")
    slider = pg.locator(".slider-row input[type=range]").first
    slider.fill(slider.get_attribute("max") or "10")  # a drag to the right end
    expect(pg.locator("#steer-diff")).to_be_visible()
    after = shown(pg)
    assert len(after) == 10 and after != before
    assert pg.evaluate("window.__noReload") is True  # re-ranked in place, not reloaded
    assert "_edits=" in pg.url
