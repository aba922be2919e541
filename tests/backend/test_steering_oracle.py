"""Steering against a brute-force oracle (docs/method.md §1.10), over random users and edit sets.

The oracle is plain numpy in float64, written from the method's text and nothing of
``backend.steering``: it reads the SAE and vectors from the run's safetensors and the users'
histories from the database, encodes with a full sort for the TopK, applies the edits to the
code (after the TopK: a scale of an active latent, an absolute value for an inactive one),
decodes in either mode, scores every item, masks the user's known items (history and dev item)
and orders by a full argsort (score descending, then item index). Hypothesis draws the cases:
scales other than 1, absolute values, several latents, inactive latents switched on, both modes;
the engine, the HTTP API and segment steering must give the oracle's lists and scores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from backend.app import create_app
from backend.steering import Edit, SteeringEngine, SteerMode, clear_cache
from backend.steering.segment import _steered_ranks
from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import User
from tests.backend.synthetic_run import SyntheticRun, run_arrays, run_engine, steerable_run

RUN = "steer-oracle"
K = 4  # steerable_run's TopK
TOP_N = 10  # the lists' length (docs/method.md §1.10: "the top 10")
SCALE_LIMIT = 10.0  # v in [-10, 10] for an active latent
ABS_LIMIT = 10.0  # |v| <= 10 x the latent's largest activation over the run's users
# float32 (engine) against float64 (oracle): scores agree to this, lists up to ties within it.
TOL = 1e-3
EXAMPLES = settings(max_examples=50, deadline=None, derandomize=True)


@dataclass
class Oracle:
    """The run's arrays in float64 and each user's known items, read independently."""

    W_enc: np.ndarray  # [d, n]
    b_enc: np.ndarray  # [n]
    W_dec: np.ndarray  # [n, d]
    b_dec: np.ndarray  # [d]
    items: np.ndarray  # [I, d]
    users: np.ndarray  # [U, d]
    known: list[list[int]]  # per user: history + dev item
    test_item: list[int]
    test_side: list[int]

    def encode(self, x: np.ndarray) -> np.ndarray:
        """TopK SAE code of one vector: the K largest pre-activations (full sort), ReLU."""
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        z = np.zeros_like(pre)
        keep = np.argsort(-pre, kind="stable")[:K]
        z[keep] = np.maximum(pre[keep], 0.0)
        return z

    def codes(self) -> np.ndarray:
        return np.stack([self.encode(x) for x in self.users])

    def steered_vector(self, user: int, z2: np.ndarray, mode: str) -> np.ndarray:
        x = self.users[user]
        if mode == "replace":
            return z2 @ self.W_dec + self.b_dec
        return x + (z2 - self.encode(x)) @ self.W_dec

    def scores(self, user: int, x2: np.ndarray) -> np.ndarray:
        """[I]: every item's score for ``x2``, the user's known items at -inf."""
        s = self.items @ x2
        s[self.known[user]] = -np.inf
        return s

    def edited_code(self, user: int, edits: list[tuple[int, float]]) -> np.ndarray:
        z = self.encode(self.users[user])
        z2 = z.copy()
        for lat, v in edits:
            z2[lat] = v * z[lat] if z[lat] > 0 else v
        return z2

    def steer(self, user: int, edits: list[tuple[int, float]], mode: str) -> np.ndarray:
        """[I] scores after the edits (the whole catalogue, known items -inf)."""
        return self.scores(user, self.steered_vector(user, self.edited_code(user, edits), mode))

    def baseline(self, user: int, mode: str) -> np.ndarray:
        """Each mode's unedited list: x for error-preserving, x̂ = decode(encode(x)) for replace."""
        x = self.users[user]
        x0 = self.encode(x) @ self.W_dec + self.b_dec if mode == "replace" else x
        return self.scores(user, x0)


def top(scores: np.ndarray, n: int = TOP_N) -> list[int]:
    """Score descending, then item index: a full argsort of the whole catalogue."""
    return [int(i) for i in np.lexsort((np.arange(scores.size), -scores))[:n]]


def assert_same_list(idx: list[int], got_scores: list[float], want: np.ndarray) -> None:
    """``idx`` with ``got_scores`` is the oracle's top list of ``want`` [I]: same scores at every
    position, the same items except where two items' scores tie within TOL."""
    ref = top(want)
    assert len(idx) == len(ref)
    for r, (i, s) in enumerate(zip(idx, got_scores, strict=True)):
        assert np.isfinite(want[i]), f"position {r}: item {i} is a known item"
        assert s == pytest.approx(want[i], abs=TOL), f"position {r}: item {i}'s score"
        if i != ref[r]:
            assert abs(want[i] - want[ref[r]]) <= TOL, f"position {r}: {i} instead of {ref[r]}"


def assert_rank(got: int, scores: np.ndarray, item: int) -> None:
    """The test item's rank, ties against it (docs/method.md §1.2), up to ties within TOL."""
    t = scores[item]
    lo = int(np.count_nonzero(scores > t + TOL))
    hi = int(np.count_nonzero(scores >= t - TOL)) - 1
    assert lo <= got <= hi, (got, lo, hi)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SyntheticRun]:
    built = steerable_run(tmp_path_factory.mktemp("oracle"), RUN, seed=7)
    clear_cache()
    return built


@pytest.fixture(scope="module")
def engine(built: tuple[Settings, SyntheticRun]) -> SteeringEngine:
    return run_engine(built[0], RUN)


@pytest.fixture(scope="module")
def oracle(built: tuple[Settings, SyntheticRun]) -> Oracle:
    a = run_arrays(built[1])
    with session_factory(built[0].resolved_database_url)() as session:
        rows = list(session.scalars(select(User).filter_by(run_id=RUN).order_by(User.idx)))
    assert [u.idx for u in rows] == list(range(len(rows)))
    return Oracle(
        W_enc=a["W_enc"], b_enc=a["b_enc"], W_dec=a["W_dec"], b_dec=a["b_dec"],
        items=a["item_embeddings"], users=a["user_vectors"],
        known=[[*u.history, u.dev_item] for u in rows],
        test_item=[u.test_item for u in rows],
        test_side=[u.idx for u in rows if u.side == "test"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def client(built: tuple[Settings, SyntheticRun]) -> Iterator[TestClient]:
    with TestClient(create_app(built[0])) as c:
        yield c


@st.composite
def user_edits(draw: st.DrawFn, oracle: Oracle) -> tuple[int, list[tuple[int, float]], str]:
    """A user, a set of edits on distinct latents and a mode: scales (≠ 1, and the extremes) on
    some of the user's active latents, absolute values within the limit on inactive ones."""
    user = draw(st.integers(0, len(oracle.users) - 1))
    z = oracle.encode(oracle.users[user])
    active = [int(j) for j in np.flatnonzero(z)]
    inactive = [j for j in range(z.size) if z[j] == 0]
    largest = oracle.codes().max(axis=0)
    scaled = draw(st.lists(st.sampled_from(active), unique=True, max_size=len(active)))
    switched = draw(st.lists(st.sampled_from(inactive), unique=True, max_size=4))
    scale = st.one_of(
        st.sampled_from([-SCALE_LIMIT, -1.0, 0.0, 2.0, SCALE_LIMIT]),
        st.floats(-SCALE_LIMIT, SCALE_LIMIT).filter(lambda v: v != 1.0),
    )
    edits = [(lat, draw(scale)) for lat in scaled]
    for lat in switched:
        limit = ABS_LIMIT * (largest[lat] if largest[lat] > 0 else largest.max())
        share = draw(st.floats(-1.0, 1.0).filter(lambda v: v != 0.0))
        edits.append((lat, float(np.float32(share * limit * 0.999))))
    order = draw(st.permutations(range(len(edits))))
    mode = draw(st.sampled_from(["error_preserving", "replace"]))
    return user, [edits[i] for i in order], mode


def test_oracle_matches_the_models_own_list(oracle: Oracle, engine: SteeringEngine) -> None:
    """The oracle itself: with no edit, error-preserving scores are x · e_i, the model's."""
    for u in range(len(oracle.users)):
        want = oracle.scores(u, oracle.users[u])
        got = engine.steer(u, [])
        assert_same_list([it.idx for it in got.items], [it.score for it in got.items], want)


@given(data=st.data())
@EXAMPLES
def test_engine_equals_the_oracle(
    data: st.DataObject, oracle: Oracle, engine: SteeringEngine
) -> None:
    user, edits, mode = data.draw(user_edits(oracle))
    r = engine.steer(user, [Edit(lat, v) for lat, v in edits], SteerMode(mode))
    want = oracle.steer(user, edits, mode)
    assert_same_list([it.idx for it in r.items], [it.score for it in r.items], want)
    before = oracle.baseline(user, mode)
    assert_same_list([it.idx for it in r.base_items], [it.score for it in r.base_items], before)
    assert_rank(r.test_rank_after, want, oracle.test_item[user])
    assert_rank(r.test_rank_before, before, oracle.test_item[user])
    z, z2 = oracle.encode(oracle.users[user]), oracle.edited_code(user, edits)
    for rep, (lat, _) in zip(r.edits, edits, strict=True):
        assert rep.kind == ("scale" if z[lat] > 0 else "absolute")
        assert rep.activation_before == pytest.approx(z[lat], abs=1e-4)
        assert rep.activation_after == pytest.approx(z2[lat], abs=1e-3)
    np.testing.assert_allclose(
        engine.steered_scores(user, [Edit(lat, v) for lat, v in edits], SteerMode(mode)),
        want, atol=TOL, rtol=0,
    )  # fmt: skip


@given(data=st.data())
@EXAMPLES
def test_http_api_equals_the_oracle(
    data: st.DataObject, oracle: Oracle, client: TestClient
) -> None:
    user, edits, mode = data.draw(user_edits(oracle))
    body = {"edits": [{"latent": lat, "value": v} for lat, v in edits], "mode": mode}
    r = client.post(
        f"/api/runs/{RUN}/users/{user}/steer",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    want = oracle.steer(user, edits, mode)
    assert_same_list([it["idx"] for it in got["items"]], [it["score"] for it in got["items"]], want)
    before = oracle.baseline(user, mode)
    base = got["base_items"]
    assert_same_list([it["idx"] for it in base], [it["score"] for it in base], before)
    assert_rank(got["test_item"]["rank_after"], want, oracle.test_item[user])
    assert got["test_item"]["idx"] == oracle.test_item[user]


def segment_oracle(
    oracle: Oracle, edits: list[tuple[int, float]], mode: str, include_inactive: bool
) -> dict[int, np.ndarray]:
    """Per test-side user, the scores [I] after the segment's edits: every value is a scale of
    an active latent; with ``include_inactive`` an inactive one is set to value x the latent's
    mean non-zero activation over the run's users, otherwise left alone."""
    codes = oracle.codes()
    nonzero = codes > 0
    mean = np.where(
        nonzero.any(0), codes.sum(0) / np.maximum(nonzero.sum(0), 1), 0.0
    )  # [n] mean of the non-zero activations
    out = {}
    for u in oracle.test_side:
        z = codes[u]
        z2 = z.copy()
        for lat, v in edits:
            if z[lat] > 0:
                z2[lat] = v * z[lat]
            elif include_inactive:
                z2[lat] = v * mean[lat]
        out[u] = oracle.scores(u, oracle.steered_vector(u, z2, mode))
    return out


@st.composite
def segment_edits(draw: st.DrawFn, n_latents: int) -> tuple[list[tuple[int, float]], str, bool]:
    lats = draw(st.lists(st.integers(0, n_latents - 1), unique=True, min_size=1, max_size=4))
    scale = st.floats(-SCALE_LIMIT, SCALE_LIMIT).filter(lambda v: v != 1.0)
    edits = [(lat, draw(scale)) for lat in lats]
    return edits, draw(st.sampled_from(["error_preserving", "replace"])), draw(st.booleans())


@given(data=st.data())
@settings(max_examples=25, deadline=None, derandomize=True)
def test_segment_per_user_lists_equal_the_oracle(
    data: st.DataObject, oracle: Oracle, engine: SteeringEngine, client: TestClient
) -> None:
    edits, mode, include_inactive = data.draw(segment_edits(len(oracle.b_enc)))
    users = np.asarray(oracle.test_side, dtype=np.int64)
    np.testing.assert_array_equal(engine.text.test_side, users)
    want = segment_oracle(oracle, edits, mode, include_inactive)
    engine_edits = [Edit(lat, v) for lat, v in edits]
    top_after, rank_after, _, _ = _steered_ranks(
        engine, users, engine_edits, SteerMode(mode), include_inactive
    )
    for row, u in enumerate(users):
        s = want[int(u)]
        idx = [int(i) for i in top_after[row]]
        assert_same_list(idx, [float(s[i]) for i in idx], s)
        assert_rank(int(rank_after[row]), s, oracle.test_item[int(u)])
    # The reported mean NDCG@10 after the edits is the oracle's lists' (ranks within ties).
    seg = engine.steer_segment(engine_edits, SteerMode(mode), include_inactive)
    lo, hi = [], []
    for u in users:
        s, t = want[int(u)], oracle.test_item[int(u)]
        lo.append(int(np.count_nonzero(s > s[t] + TOL)))
        hi.append(int(np.count_nonzero(s >= s[t] - TOL)) - 1)

    def ndcg(ranks: list[int]) -> float:
        r = np.asarray(ranks, dtype=np.float64)
        return float(np.where(r < TOP_N, 1.0 / np.log2(r + 2.0), 0.0).mean())

    assert ndcg(hi) - 1e-9 <= seg.ndcg_after <= ndcg(lo) + 1e-9
    assert seg.n_users == users.size
    body = {
        "edits": [{"latent": lat, "value": v} for lat, v in edits],
        "mode": mode,
        "include_inactive": include_inactive,
    }
    r = client.post(
        f"/api/runs/{RUN}/segment/steer",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    after = r.json()["ndcg@10"]["after"]
    assert ndcg(hi) - 1e-9 <= after <= ndcg(lo) + 1e-9
