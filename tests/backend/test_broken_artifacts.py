"""Broken artifacts say so (issue 8 §5): a missing, changed or non-finite file of a published
version answers 503 naming the run, the version and the file (never a stack trace or an absolute
path), and the steering cache notices a replaced file."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save_file
from sqlalchemy import update

from backend.app import create_app
from backend.routes import steer as steer_routes
from backend.steering import clear_cache
from core import mapped, rundir
from core.rundir import ArtifactError, Published, load_sae_arrays, load_vectors
from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import Run
from core.versions import create_version
from tests.backend.synthetic_run import SyntheticRun, make_run

HTML = {"accept": "text/html"}
RUN_ID = "broken-synthetic"


def publish_version(settings: Settings, synthetic: SyntheticRun, number: int) -> Path:
    """Turn the synthetic run's directory into version ``number`` (as the worker's publish does)
    and point the run's row at it; returns the version directory."""
    art = synthetic.artifact_dir
    for name in (rundir.CONFIG, rundir.RECOMMENDER_REPORT, rundir.SAE_REPORT, rundir.REPORT):
        (art / name).write_text(json.dumps({"run_id": synthetic.run_id}))
    version = create_version(synthetic.run_id, art, number)
    sessions = session_factory(settings.resolved_database_url)
    with sessions.begin() as session:
        session.execute(
            update(Run)
            .where(Run.id == synthetic.run_id)
            .values(artifact_dir=str(version.dir), version=number, digests=version.digests)
        )
    return version.dir


@pytest.fixture
def broken(fresh_settings: Settings) -> Iterator[tuple[TestClient, SyntheticRun, Path]]:
    """A small synthetic run published as version 2, a client on it, the version directory."""
    sessions = session_factory(fresh_settings.resolved_database_url)
    synthetic = make_run(
        fresh_settings.data_dir, sessions, RUN_ID, n_items=300, n_users=40, n_latents=128, n_tags=20
    )
    vdir = publish_version(fresh_settings, synthetic, 2)
    clear_cache()
    with TestClient(create_app(fresh_settings)) as client:
        yield client, synthetic, vdir
    clear_cache()


def writable(path: Path) -> None:
    """Let the test change a file of a (read-only) version directory, as an intruder could."""
    path.parent.chmod(0o755)
    if path.exists():
        path.chmod(0o644)


def requests_touching_vectors(client: TestClient, user: int) -> dict[str, httpx.Response]:
    """Every route that loads the run's arrays: the user page, its JSON, steer, segment, search
    with a user (its slider ranges; a search without one reads only the database)."""
    base = f"/runs/{RUN_ID}/users/{user}"
    edits = [{"latent": 0, "value": 1.0}]
    return {
        "user page": client.get(base, headers=HTML),
        "user json": client.get(f"{base}.json"),
        "steer": client.post(f"/api/runs/{RUN_ID}/users/{user}/steer", json={"edits": edits}),
        "segment": client.post(f"/api/runs/{RUN_ID}/segment/steer", json={"edits": edits}),
        "search": client.get(
            f"/api/runs/{RUN_ID}/steer/latents", params={"q": "action", "user": user}
        ),
    }


def assert_503_names_run_and_file(
    responses: dict[str, httpx.Response], file: str, tmp: Path
) -> None:
    for route, response in responses.items():
        assert response.status_code == 503, (route, response.status_code, response.text[:300])
        text = response.text
        assert f"run {RUN_ID!r} v2" in text or f"run &#39;{RUN_ID}&#39; v2" in text, (route, text)
        assert file in text, (route, text[:300])
        assert "Traceback" not in text and str(tmp) not in text, (route, text[:300])
        if route != "user page":
            detail = response.json()["detail"]
            assert isinstance(detail, str) and file in detail and RUN_ID in detail


@pytest.fixture(autouse=True)
def no_steer_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """The steer API re-reads its run at most once a second; tests change files faster."""
    monkeypatch.setattr(steer_routes, "RUN_RECHECK_S", 0.0)


def test_missing_vectors_file_gives_503_naming_run_and_file(broken, fresh_settings) -> None:
    client, synthetic, vdir = broken
    user = int(synthetic.test_users[0])
    assert client.get(f"/runs/{RUN_ID}/users/{user}.json").status_code == 200  # cached now
    writable(vdir / rundir.VECTORS)
    (vdir / rundir.VECTORS).unlink()
    responses = requests_touching_vectors(client, user)
    assert_503_names_run_and_file(responses, "vectors.safetensors", fresh_settings.data_dir)
    assert "is missing" in responses["user json"].json()["detail"]


def test_digest_mismatch_is_refused_with_run_and_file(broken, fresh_settings) -> None:
    client, synthetic, vdir = broken
    weights = vdir / rundir.SAE_DIR / rundir.SAE_WEIGHTS
    writable(weights)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of the last float: still a valid, finite safetensors file
    weights.write_bytes(bytes(data))

    published = Published(
        RUN_ID, 2, vdir, json.loads((vdir / rundir.MANIFEST).read_text())["files"]
    )
    with pytest.raises(ArtifactError) as err:
        load_sae_arrays(published)
    message = str(err.value)
    assert message.startswith(f"run {RUN_ID!r} v2: sae/sae_weights.safetensors does not match")
    assert "republish" in message and str(vdir) not in message
    load_vectors(published)  # the untouched file still loads

    responses = requests_touching_vectors(client, int(synthetic.test_users[0]))
    assert_503_names_run_and_file(responses, "sae/sae_weights.safetensors", fresh_settings.data_dir)
    assert "digest recorded at publish" in responses["steer"].json()["detail"]


def nan_copy(good: Path, target: Path) -> None:
    arrays = rundir.load_arrays(good)
    arrays["user_vectors"] = np.full_like(arrays["user_vectors"], np.nan)
    save_file(arrays, str(target))


def test_nan_vectors_are_refused_and_cache_notices_restored_file(
    broken, fresh_settings, tmp_path
) -> None:
    client, synthetic, vdir = broken
    user = int(synthetic.test_users[1])
    url = f"/runs/{RUN_ID}/users/{user}.json"
    steer = f"/api/runs/{RUN_ID}/users/{user}/steer"
    good = client.get(url)
    good_steer = client.post(steer, json={"edits": [{"latent": 3, "value": 0.5}]})
    assert good.status_code == 200 and good_steer.status_code == 200
    vectors = vdir / rundir.VECTORS
    backup = tmp_path / "good.safetensors"
    shutil.copyfile(vectors, backup)

    # Replaced by a file of NaNs after publishing: refused, even though the engine was cached.
    writable(vectors)
    nan_copy(backup, tmp_path / "nan.safetensors")
    shutil.copyfile(tmp_path / "nan.safetensors", vectors)
    responses = requests_touching_vectors(client, user)
    assert_503_names_run_and_file(responses, "vectors.safetensors", fresh_settings.data_dir)

    # The good file back: picked up at once, the very same answers as before.
    shutil.copyfile(backup, vectors)
    assert client.get(url).json() == good.json()
    assert client.post(steer, json={"edits": [{"latent": 3, "value": 0.5}]}).json() == (
        good_steer.json()
    )

    # A version published with NaNs (its digest matches) is refused for the NaNs themselves.
    nan_version = tmp_path / "nan-version"
    (nan_version / rundir.SAE_DIR).mkdir(parents=True)
    nan_copy(backup, nan_version / rundir.VECTORS)
    digests = {rundir.VECTORS: rundir.file_digest(nan_version / rundir.VECTORS)}
    with pytest.raises(ArtifactError, match=r"v3: vectors.safetensors: user_vectors holds \d+ non"):
        load_vectors(Published(RUN_ID, 3, nan_version, digests))
    with pytest.raises(ArtifactError, match="non-finite"):  # and by the worker's own loader
        load_vectors(nan_version)


def test_unreadable_file_is_an_artifact_error_not_a_crash(tmp_path) -> None:
    (tmp_path / rundir.VECTORS).write_bytes(b"\x00garbage, not safetensors")
    (tmp_path / rundir.SAE_DIR).mkdir()
    (tmp_path / rundir.SAE_DIR / rundir.SAE_CFG).write_text("{not json")
    digests = {
        name: rundir.file_digest(tmp_path / name)
        for name in (rundir.VECTORS, f"{rundir.SAE_DIR}/{rundir.SAE_CFG}")
    }
    published = Published("x", 1, tmp_path, digests)
    with pytest.raises(ArtifactError, match=r"^run 'x' v1: vectors.safetensors is not a readable"):
        load_vectors(published)
    with pytest.raises(ArtifactError, match=r"^run 'x' v1: sae/cfg.json is not readable JSON"):
        load_sae_arrays(published)


# --- content, not mtime (docs/architecture.md, run versions) ----------------------------------


def user_row_offset(path: Path, user: int) -> int:
    """The byte offset of ``user``'s row of ``user_vectors`` in a safetensors file (its
    documented layout: u64 header length, the JSON header, then the bytes)."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    info = json.loads(raw[8 : 8 + size])["user_vectors"]
    assert info["dtype"] == "F32"
    return 8 + size + info["data_offsets"][0] + user * info["shape"][1] * 4


def rewrite_keeping_mtime(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path`` in place and give it back its atime and mtime."""
    st = path.stat()
    writable(path)
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (
        st.st_mtime_ns,
        st.st_size,
        st.st_ino,
    )


def user_requests(client: TestClient, user: int) -> dict[str, httpx.Response]:
    """Every route whose answer holds numbers computed from ``user``'s row of the vectors."""
    return {
        **requests_touching_vectors(client, user),
        "why": client.get(f"/runs/{RUN_ID}/users/{user}/why.json", params={"item": 0}),
        "search for user": client.get(
            f"/api/runs/{RUN_ID}/steer/latents", params={"q": "action", "user": user}
        ),
    }


def no_non_finite_number(route: str, response: httpx.Response) -> None:
    """A 200 or a 503, and no NaN or infinity anywhere in a JSON body."""
    assert response.status_code in (200, 503), (route, response.status_code, response.text[:300])
    if route == "user page":  # a 503 page says "not finite (NaN or inf)" in words
        if response.status_code == 200:
            assert "NaN" not in response.text and "∞" not in response.text, route
        return

    def refuse(constant: str) -> None:
        raise AssertionError(f"{route}: {constant} in the response")

    json.loads(response.text, parse_constant=refuse)


def test_one_byte_changed_with_mtime_kept_is_refused_and_the_restored_file_served(
    broken, fresh_settings
) -> None:
    client, synthetic, vdir = broken
    user = int(synthetic.test_users[0])
    vectors = vdir / rundir.VECTORS
    good = user_requests(client, user)
    assert all(r.status_code == 200 for r in good.values())  # the engine is built and cached
    original = vectors.read_bytes()
    offset = user_row_offset(vectors, user)
    flipped = bytearray(original)
    flipped[offset + 3] ^= 0x40  # an exponent bit of the user's first value: huge, finite
    value = float(np.frombuffer(bytes(flipped[offset : offset + 4]), np.float32)[0])
    assert 1e30 < abs(value) < 3.4e38  # what the unfixed server served as numbers

    changed_at = time.monotonic()
    rewrite_keeping_mtime(vectors, bytes(flipped))
    responses = user_requests(client, user)
    assert time.monotonic() - changed_at < mapped.RECHECK_S  # refused within the bound
    assert_503_names_run_and_file(responses, "vectors.safetensors", fresh_settings.data_dir)
    assert "digest recorded at publish" in responses["user json"].json()["detail"]

    # The good bytes back, mtime kept again: the same app serves the very same answers.
    rewrite_keeping_mtime(vectors, original)
    again = user_requests(client, user)
    for route in ("user json", "steer", "segment", "search", "why", "search for user"):
        assert again[route].status_code == 200, (route, again[route].text[:300])
        assert again[route].json() == good[route].json(), route


def test_a_nan_written_into_a_valid_file_never_reaches_a_response(broken) -> None:
    client, synthetic, vdir = broken
    user = int(synthetic.test_users[2])
    vectors = vdir / rundir.VECTORS
    assert client.get(f"/runs/{RUN_ID}/users/{user}.json").status_code == 200
    data = bytearray(vectors.read_bytes())
    offset = user_row_offset(vectors, user)
    data[offset : offset + 8] = np.array([np.nan, np.inf], np.float32).tobytes()
    rewrite_keeping_mtime(vectors, bytes(data))  # still a valid safetensors file
    for route, response in user_requests(client, user).items():
        no_non_finite_number(route, response)
        if route not in ("segment", "search"):  # those answer without this user's numbers
            assert response.status_code == 503, route


def test_published_values_that_overflow_are_refused_where_they_become_responses(
    broken, fresh_settings
) -> None:
    """A version published with a finite user vector of 3e38 (its digest matches, every value
    is finite) gives infinite activations and scores: each response holding them is a 503
    naming the run, the version and the file, never a NaN, an infinity or a 500."""
    client, synthetic, _ = broken
    user = int(synthetic.test_users[3])
    work = synthetic.artifact_dir / rundir.VECTORS
    arrays = rundir.load_arrays(work)
    arrays["user_vectors"][user] = np.float32(3e38)
    save_file(arrays, str(work))
    publish_version(fresh_settings, synthetic, 3)
    responses = user_requests(client, user)
    for route, response in responses.items():
        no_non_finite_number(route, response)
    for route in ("user page", "user json", "steer", "why"):
        response = responses[route]
        assert response.status_code == 503, (route, response.text[:300])
        text = response.text
        assert "v3" in text and "vectors.safetensors" in text and "overflow" in text, text
        assert "not a finite number" in text or "not finite" in text, text
    other = int(synthetic.test_users[4])
    for route, response in user_requests(client, other).items():
        no_non_finite_number(route, response)
