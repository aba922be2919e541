"""Bring your own model (docs/import.md): a TruncatedSVD made here by scikit-learn, exported by
examples/svd_export.py, imported, published and steered over HTTP; every refusal with its
message; importing never changes another run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from backend.app import create_app
from core.rundir import RECOMMENDER_REPORT, SAE_REPORT
from core.settings import Settings
from core.store import reads
from core.store.engine import session_factory
from worker.data.synthetic import SyntheticConfig, generate
from worker.importer import ImportRefused, check_import, import_run
from worker.sae.io import save_sae
from worker.sae.model import TopKSAE

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from svd_export import export_svd  # noqa: E402

pytestmark = pytest.mark.slow
D = 16
SAE_OPTIONS: dict[str, Any] = dict(
    sae_scale=2, sae_k=4, sae_fold_ins=4, sae_overrides={"max_epochs": 30}, tuning=False
)


def _synthetic() -> tuple[pd.DataFrame, pd.DataFrame]:
    raw, _ = generate(SyntheticConfig(n_users=300, n_items=100, n_tags=4, mean_history=20, seed=1))
    items = raw.items.copy()
    for column in ("genres", "tags"):
        items[column] = ["|".join(v) for v in items[column]]
    return raw.interactions[["user", "item", "timestamp"]], items


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    interactions, items = _synthetic()
    out = tmp_path_factory.mktemp("svd") / "import"
    export_svd(interactions, out, d=D, seed=0, items=items, description="sklearn SVD, 16 factors")
    return out


@pytest.fixture(scope="module")
def imported(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("var"), allowed_hosts=["testserver"])
    run = import_run(exported, "syn-svd", settings=settings, log=lambda _: None, **SAE_OPTIONS)
    return settings, run


def _sklearn_scores(exported: Path) -> tuple[list[str], list[str], np.ndarray]:
    """The exported SVD's own scores, from its files (float64)."""
    users = pd.read_csv(exported / "user_ids.csv", dtype=str)["user"].tolist()
    items = pd.read_csv(exported / "item_ids.csv", dtype=str)["item"].tolist()
    u = np.load(exported / "users.npy").astype(np.float64)
    v = np.load(exported / "items.npy").astype(np.float64)
    return users, items, u @ v.T


def test_imported_run_is_the_sklearn_model(imported: tuple[Settings, Any], exported: Path) -> None:
    settings, run = imported
    report = json.loads((run.dir / RECOMMENDER_REPORT).read_text())
    assert report["name"] == "imported"
    assert report["imported"]["description"] == "sklearn SVD, 16 factors"
    assert report["imported"]["ranking_reproduced"] == 1.0
    assert report["imported"]["ranking_users"] == 100
    # The exporter's own NDCG@10 (numpy, full ranking) is what our evaluation finds.
    stated = json.loads((exported / "manifest.json").read_text())["metrics"]["test"]
    assert report["test"]["ndcg@10"] == pytest.approx(stated["ndcg@10"], abs=1e-9)
    # The vectors the explorer steers are sklearn's transform, in the dataset's user order.
    users, items, _ = _sklearn_scores(exported)
    svd_users = np.load(exported / "users.npy")
    dataset = run.dataset
    rows = [users.index(u) for u in dataset.user_ids]
    np.testing.assert_array_equal(run.user_vectors, svd_users[rows])
    sae = json.loads((run.dir / SAE_REPORT).read_text())
    assert sae["fvu_test"] is not None and sae["pca_fvu_test"] is not None
    with session_factory(settings.resolved_database_url)() as session:
        row = reads.get_run(session, "syn-svd")
    assert row is not None and row.recommender == "imported" and row.n_items == dataset.n_items


def test_explorer_shows_and_steers_the_sklearn_ranking(
    imported: tuple[Settings, Any], exported: Path
) -> None:
    settings, run = imported
    users, items, scores = _sklearn_scores(exported)
    dataset = run.dataset
    with TestClient(create_app(settings)) as client:
        page = client.get("/runs/syn-svd.json")
        assert page.status_code == 200
        assert "sklearn SVD, 16 factors" in client.get("/runs/syn-svd").text
        for u in (0, 7, 123):
            got = client.get(f"/runs/syn-svd/users/{u}.json")
            assert got.status_code == 200, got.text
            body = got.json()
            # sklearn's own top 10 of this user, the history (train + dev) masked
            row = scores[users.index(dataset.user_ids[u])].copy()
            history = {dataset.item_ids[i] for i in dataset.sequences[u][:-1]}
            for j, item in enumerate(items):
                if item in history:
                    row[j] = -np.inf
            theirs = [items[j] for j in np.argsort(-row, kind="stable")[:10]]
            shown = [dataset.item_ids[int(it["idx"])] for it in body["steer"]["items"][:10]]
            assert shown == theirs
            latent = int(body["sliders"][0]["latent"])
            steer = client.post(
                f"/api/runs/syn-svd/users/{u}/steer",
                json={"edits": [{"latent": latent, "value": 10.0}]},
            )
            assert steer.status_code == 200, steer.text
            steered = [int(it["idx"]) for it in steer.json()["items"][:10]]
            assert steered != [int(it["idx"]) for it in body["steer"]["items"][:10]]


def _copy(exported: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bad"
    shutil.copytree(exported, target)
    return target


def _manifest(directory: Path, **changes: Any) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def _nan_item(d: Path) -> None:
    a = np.load(d / "items.npy")
    a[3, 1] = np.nan
    np.save(d / "items.npy", a)


def _int_items(d: Path) -> None:
    np.save(d / "items.npy", np.load(d / "items.npy").astype(np.int64))


def _short_ids(d: Path) -> None:
    ids = pd.read_csv(d / "item_ids.csv", dtype=str)
    ids.iloc[:-1].to_csv(d / "item_ids.csv", index=False)


def _duplicate_id(d: Path) -> None:
    ids = pd.read_csv(d / "item_ids.csv", dtype=str)
    ids.loc[5, "item"] = ids.loc[2, "item"]
    ids.to_csv(d / "item_ids.csv", index=False)


def _unknown_item(d: Path) -> None:
    frame = pd.read_csv(d / "interactions.csv", dtype=str)
    frame.loc[4, "item"] = "no-such-item"
    frame.to_csv(d / "interactions.csv", index=False)


def _wrong_d(d: Path) -> None:
    np.save(d / "users.npy", np.load(d / "users.npy")[:, :-1])


def _missing_user(d: Path) -> None:
    np.save(d / "users.npy", np.load(d / "users.npy")[:-1])
    ids = pd.read_csv(d / "user_ids.csv", dtype=str)
    ids.iloc[:-1].to_csv(d / "user_ids.csv", index=False)


def _leaky_split(d: Path) -> None:
    frame = pd.read_csv(d / "interactions.csv", dtype=str)
    order = frame.groupby("user").cumcount(ascending=False)
    frame["split"] = np.where(order == 0, "test", np.where(order == 1, "dev", "train"))
    first = frame.index[frame["split"] == "test"][0]
    leak = frame.loc[first].copy()
    leak["split"], leak["timestamp"] = "train", "0"
    pd.concat([frame, leak.to_frame().T]).to_csv(d / "interactions.csv", index=False)
    _manifest(d, split="column")


def _shuffled_ranking(d: Path) -> None:
    ranking = pd.read_csv(d / "ranking.csv", dtype=str)
    first = ranking["user"] == ranking["user"].iloc[0]
    ranking.loc[first, "item"] = pd.read_csv(d / "item_ids.csv", dtype=str)["item"][-10:].values
    ranking.to_csv(d / "ranking.csv", index=False)


def _wrong_metric(d: Path) -> None:
    _manifest(d, metrics={"test": {"ndcg@10": 0.9}})


def _no_manifest(d: Path) -> None:
    (d / "manifest.json").unlink()


REFUSALS = [
    (_no_manifest, r"manifest.json is missing"),
    (_nan_item, r"items.npy in .*: the item embeddings row 3, column 1 is nan"),
    (_int_items, r"items.npy in .*dtype int64; export float32 or float64"),
    (_short_ids, r"item_ids.csv in .*item ids for .* embedding rows"),
    (_duplicate_id, r"item_ids.csv in .*data row 6: item id .* repeats row 3"),
    (_unknown_item, r"interactions.csv in .*data row 5: item 'no-such-item' has no embedding"),
    (_wrong_d, r"users.npy in .*representations have d = 15, .* d = 16"),
    (_missing_user, r"user_ids.csv in .*has no representation"),
    (_leaky_split, r"interactions.csv in .*the split leaks test items into training"),
    (_shuffled_ranking, r"ranking.csv in .*reproduces the top 10 of only 99% of 100 users"),
    (_wrong_metric, r"manifest.json in .*metrics.test.ndcg@10 states 0.9000; the vectors give"),
]


@pytest.mark.parametrize(("mutate", "message"), REFUSALS, ids=[m.__name__ for m, _ in REFUSALS])
def test_each_malformed_import_is_refused_with_what_to_fix(
    exported: Path, tmp_path: Path, mutate: Any, message: str
) -> None:
    bad = _copy(exported, tmp_path)
    check_import(bad)  # the copy itself imports
    mutate(bad)
    with pytest.raises(ImportRefused, match=message):
        check_import(bad)
    # refused before anything is written: no run directory, no database
    settings = Settings(data_dir=tmp_path / "var")
    with pytest.raises(ImportRefused):
        import_run(bad, "refused", settings=settings, log=lambda _: None)
    assert not (settings.runs_dir / "refused").exists()
    assert not (settings.data_dir / "recsae.db").exists()


def _saelens_sae(directory: Path, d_in: int, d_sae: int = 32, k: int = 4) -> Path:
    torch.manual_seed(0)
    return save_sae(TopKSAE(d_in, d_sae, k), None, directory)


def test_an_sae_of_the_wrong_shape_is_refused(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(ImportRefused, match=r"d_in = 12, the imported vectors have d = 16"):
        check_import(exported, _saelens_sae(tmp_path / "sae12", 12))
    good = _saelens_sae(tmp_path / "sae16", D)
    weights = good / "sae_weights.safetensors"
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(weights))
    tensors["W_dec"] = tensors["W_dec"][:, :-1].copy()
    save_file(tensors, str(weights))
    with pytest.raises(ImportRefused, match=r"W_dec has shape \(32, 15\), expected \(32, 16\)"):
        check_import(exported, good)


def test_importing_never_changes_another_run(
    imported: tuple[Settings, Any], exported: Path, tmp_path: Path
) -> None:
    settings, run = imported
    other = settings.runs_dir / "ml-latest-small-bprmf"
    other.mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({"recommender": "bprmf"}))
    with pytest.raises(ImportRefused, match="holds 'bprmf', not an imported model"):
        import_run(exported, "ml-latest-small-bprmf", settings=settings, log=lambda _: None)
    assert json.loads((other / "config.json").read_text()) == {"recommender": "bprmf"}
    assert sorted(p.name for p in other.iterdir()) == ["config.json"]

    # The same import again: a new version of its own run; nothing recomputed.
    with session_factory(settings.resolved_database_url)() as session:
        before = reads.get_run(session, "syn-svd")
    again = import_run(exported, "syn-svd", settings=settings, log=lambda _: None, **SAE_OPTIONS)
    with session_factory(settings.resolved_database_url)() as session:
        after = reads.get_run(session, "syn-svd")
    assert before is not None and after is not None
    assert after.version == before.version + 1
    assert again.timings() == run.timings()


def test_an_sae_trained_elsewhere_is_used_instead_of_training(
    exported: Path, tmp_path: Path
) -> None:
    """An SAELens-layout SAE (written by our exporter: sae-lens itself pulls transformers)."""
    sae_dir = _saelens_sae(tmp_path / "sae", D, d_sae=32, k=4)
    settings = Settings(data_dir=tmp_path / "var")
    run = import_run(exported, "syn-svd-sae", sae_dir, settings=settings, log=lambda _: None,
                     tuning=False)  # fmt: skip
    from safetensors.numpy import load_file

    ours = load_file(str(run.dir / "sae" / "sae_weights.safetensors"))
    theirs = load_file(str(sae_dir / "sae_weights.safetensors"))
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        np.testing.assert_array_equal(ours[name], theirs[name])
    report = json.loads((run.dir / SAE_REPORT).read_text())
    assert report["n_latents"] == 32 and report["imported_from"]
    assert report["fvu_test"] is not None and report["pca_fvu_test"] is not None
    assert 0.0 <= report["dead_fraction"] <= 1.0


def test_a_pytorch_sequential_model_with_an_item_bias_imports_by_its_recipe(
    tmp_path: Path,
) -> None:
    """examples/torch_hook_export.py: a GRU whose output layer has a bias, every position
    exported by a forward hook; the explorer's top 10 is the model's own."""
    from torch_hook_export import export_gru

    out = tmp_path / "gru"
    export_gru(out, n_users=110, n_items=40, d=8, length=8, epochs=1)
    settings = Settings(data_dir=tmp_path / "var", allowed_hosts=["testserver"])
    run = import_run(out, "gru", settings=settings, log=lambda _: None, sae_scale=2, sae_k=4,
                     sae_overrides={"max_epochs": 20}, tuning=False)  # fmt: skip
    report = json.loads((run.dir / RECOMMENDER_REPORT).read_text())
    assert report["name"] == "imported-sequential"
    assert report["imported"]["score"] == "dot+bias"
    assert report["imported"]["ranking_reproduced"] == 1.0
    assert run.probe.sequential and run.probe.item_emb.shape[1] == 9  # d + the bias column
    bias = np.load(out / "item_bias.npy")
    ids = pd.read_csv(out / "item_ids.csv", dtype=str)["item"].tolist()
    rows = [ids.index(i) for i in run.dataset.item_ids]
    np.testing.assert_array_equal(run.probe.item_emb[:, -1], bias[rows])
    ranking = pd.read_csv(out / "ranking.csv", dtype=str)
    with TestClient(create_app(settings)) as client:
        for u in (0, 50):
            body = client.get(f"/runs/gru/users/{u}.json").json()
            shown = [run.dataset.item_ids[int(it["idx"])] for it in body["steer"]["items"][:10]]
            user = run.dataset.user_ids[u]
            assert shown == ranking[ranking["user"] == user]["item"].tolist()


def test_recsae_import_prints_the_refusal_and_writes_nothing(
    exported: Path, tmp_path: Path
) -> None:
    import os
    import subprocess

    bad = _copy(exported, tmp_path)
    _unknown_item(bad)
    env = {**os.environ, "RECSAE_DATA_DIR": str(tmp_path / "var")}
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "import", str(bad), "--name", "cli-bad"],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "error: interactions.csv in" in done.stderr
    assert "data row 5: item 'no-such-item' has no embedding" in done.stderr
    assert not (tmp_path / "var" / "runs" / "cli-bad").exists()


def test_an_sae_for_a_biased_score_is_widened_to_pass_the_constant_through(
    tmp_path: Path,
) -> None:
    """x' = [x, 1] (docs/import.md, the bias): the widened SAE gives x's codes and [x_hat, 1]."""
    from worker.importer import check_sae

    sae_dir = _saelens_sae(tmp_path / "sae", 6, d_sae=12, k=3)
    cfg, tensors = check_sae(sae_dir, 6, bias=True)
    assert (cfg["d_in"], cfg["d_sae"], cfg["k"]) == (7, 12, 3)
    original = TopKSAE(6, 12, 3)
    widened = TopKSAE(7, 12, 3)
    from safetensors.numpy import load_file

    with torch.no_grad():
        for name, value in load_file(str(sae_dir / "sae_weights.safetensors")).items():
            getattr(original, name).copy_(torch.from_numpy(value))
        for name, value in tensors.items():
            getattr(widened, name).copy_(torch.from_numpy(value))
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
    x1 = torch.cat([x, torch.ones(20, 1)], dim=1)
    with torch.no_grad():
        z, z1 = original.encode_dense(x), widened.encode_dense(x1)
        np.testing.assert_allclose(z1.numpy(), z.numpy(), atol=1e-6)
        np.testing.assert_allclose(widened.decode(z1)[:, :6].numpy(), original.decode(z).numpy(),
                                   atol=1e-6)  # fmt: skip
        np.testing.assert_allclose(widened.decode(z1)[:, 6].numpy(), 1.0, atol=1e-6)
