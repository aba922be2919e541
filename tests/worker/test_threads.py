"""Issue 12: the worker's thread count follows the cores other processes leave free, and the
SASRec speed-ups (thread choice, negative sampling) keep training deterministic under a seed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.settings import get_settings
from worker import threads as threads_mod
from worker.data.dataset import Dataset
from worker.recommenders.sampling import KnownItems, sample_negatives
from worker.recommenders.train import build_recommender, default_config, train_epoch
from worker.threads import ThreadGovernor, choose_threads, governor, read_cpu_seconds

PROC_STAT = """cpu  900 0 300 5000 0 0 0 0 0 0
cpu0 400 0 100 2000 100 0 0 0 0 0
cpu1 300 0 100 2500 0 0 0 0 0 0
cpu2 200 0 100 500 0 0 0 0 0 0
intr 12345
"""


@pytest.mark.parametrize(
    ("usable", "others", "expected"),
    [(2, 0.0, 2), (2, 0.3, 2), (2, 1.0, 1), (2, 2.0, 1), (2, 9.0, 1), (4, 1.0, 3), (1, 0.0, 1)],
)
def test_thread_count_is_the_cores_others_leave_never_below_one(
    usable: int, others: float, expected: int
) -> None:
    assert choose_threads(usable, others) == expected


def test_thread_count_needs_a_core() -> None:
    with pytest.raises(ValueError, match="usable cores"):
        choose_threads(0, 0.0)


def test_busy_seconds_sum_only_our_cores_without_idle_or_iowait(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(PROC_STAT)
    hz = threads_mod.os.sysconf("SC_CLK_TCK")
    assert read_cpu_seconds({0, 1}, stat) == pytest.approx((500 + 400) / hz)
    assert read_cpu_seconds({2}, stat) == pytest.approx(300 / hz)


class FakeMachine:
    """A load reading: other processes keep ``others`` cores busy, we use ``own`` cores."""

    def __init__(self, others: float, own: float) -> None:
        self.others, self.own, self.t = others, own, 0.0

    def tick(self, seconds: float) -> None:
        self.t += seconds

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(
            threads_mod, "read_cpu_seconds", lambda: (self.others + self.own) * self.t
        )
        monkeypatch.setattr(threads_mod, "own_cpu_seconds", lambda: self.own * self.t)
        monkeypatch.setattr(threads_mod.time, "monotonic", lambda: self.t)
        monkeypatch.setattr(threads_mod.time, "sleep", self.tick)


@pytest.mark.parametrize(("others", "expected"), [(2.0, 1), (1.0, 1), (0.1, 2)])
def test_two_busy_loops_on_two_cores_leave_one_thread(
    monkeypatch: pytest.MonkeyPatch, others: float, expected: int
) -> None:
    """The finding: two threads beside two busy loops spun 5-10x slower than one thread."""
    machine = FakeMachine(others=others, own=0.5)
    machine.install(monkeypatch)
    gov = ThreadGovernor(usable=2)
    assert gov.start() == expected
    assert torch.get_num_threads() == expected


def test_governor_follows_the_load_between_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = FakeMachine(others=0.0, own=2.0)
    machine.install(monkeypatch)
    gov = ThreadGovernor(usable=2)
    assert gov.start() == 2
    machine.others, machine.own = 2.0, 1.0  # busy loops start during an epoch
    machine.tick(0.2)
    assert gov.update() == 2  # too short a window to judge: keeps the count
    machine.tick(1.0)
    assert gov.update() == 1
    machine.others = 0.0  # they stop
    machine.tick(1.0)
    assert gov.update() == 2
    assert gov.history == [2, 2, 1, 2]  # what the reports' "threads" show, one per look


def test_a_reserved_core_is_left_to_the_batch_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = FakeMachine(others=0.0, own=2.0)
    machine.install(monkeypatch)
    gov = ThreadGovernor(usable=4, reserve=1)
    assert gov.start() == 3  # four free cores: three compute threads and the producer's
    machine.others = 2.0
    machine.tick(1.0)
    assert gov.update() == 1
    machine.others = 4.0  # none free: still one thread, never zero
    machine.tick(1.0)
    assert gov.update() == 1
    assert ThreadGovernor(usable=2, reserve=1, fixed=2).start() == 2  # a fixed count is kept
    with pytest.raises(ValueError, match="reserve"):
        ThreadGovernor(reserve=-1)


def test_fixed_threads_and_recsae_threads_pin_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeMachine(others=2.0, own=0.0).install(monkeypatch)
    assert governor(2).threads == 2  # a config's threads=2 wins over the load
    monkeypatch.setenv("RECSAE_THREADS", "1")
    get_settings.cache_clear()
    try:
        assert governor(0).fixed == 1
    finally:
        get_settings.cache_clear()
    with pytest.raises(ValueError, match=">= 0"):
        ThreadGovernor(fixed=-1)


def _reference_negatives(
    rng: np.random.Generator, known: KnownItems, users: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """The sampler as it was: every entry checked again on every round."""
    neg = rng.integers(0, known.n_items, size=shape, dtype=np.int64)
    users_b = np.asarray(users, dtype=np.int64).reshape((-1,) + (1,) * (len(shape) - 1))
    for _ in range(10):
        bad = known.contains(users_b, neg)
        if not bad.any():
            break
        neg[bad] = rng.integers(0, known.n_items, size=int(bad.sum()), dtype=np.int64)
    return neg


def dense_dataset(n_users: int = 20, n_items: int = 40, seed: int = 0) -> Dataset:
    """Users who know half the items or more, so many negatives need redrawing."""
    rng = np.random.default_rng(seed)
    seqs = [
        rng.choice(n_items, size=int(rng.integers(20, 36)), replace=False) for _ in range(n_users)
    ]
    return Dataset(
        name="dense",
        user_ids=[str(u) for u in range(n_users)],
        item_ids=[str(i) for i in range(n_items)],
        sequences=[s.astype(np.int64) for s in seqs],
        timestamps=[np.arange(len(s)) for s in seqs],
        item_title=[f"item {i}" for i in range(n_items)],
        item_genres=[[] for _ in range(n_items)],
        item_tags=[[] for _ in range(n_items)],
        item_text=["" for _ in range(n_items)],
    )


def test_negatives_recheck_only_redrawn_entries_with_the_same_draws() -> None:
    """The finding: re-checking every entry on every round took half a SASRec epoch at ML-1M."""
    dataset = dense_dataset()
    known = KnownItems(dataset)
    users = np.arange(dataset.n_users)
    for shape in [(20,), (20, 7), (20, 5, 16)]:
        ours = sample_negatives(np.random.default_rng(3), known, users, shape)
        ref = _reference_negatives(np.random.default_rng(3), known, users, shape)
        np.testing.assert_array_equal(ours, ref)
        hits = known.contains(users.reshape((-1,) + (1,) * (len(shape) - 1)), ours)
        assert hits.mean() < 0.05  # users who know 35 of 40 items keep a few


def sasrec_epochs(dataset: Dataset, threads: int, epochs: int = 2) -> tuple[list[float], dict]:
    """Two seeded SASRec epochs (the negatives sampler and the epoch loop of the pipeline)."""
    config = default_config("sasrec", batch_size=8, threads=threads)
    torch.manual_seed(config.seed)
    governor(threads)
    model = build_recommender("sasrec", dataset.n_users, dataset.n_items, config)
    model.prepare(dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    losses = [x for e in range(epochs) for x in train_epoch(model, optimizer, dataset, rng, e)]
    return losses, model.state_dict()


def test_sasrec_training_is_deterministic_under_a_seed() -> None:
    """Same seed, same threads: the same weights bit for bit (faster negative sampling included).
    Another thread count changes float sums in the last bits only (docs/deviations.md)."""
    dataset = dense_dataset()
    (loss_a, state_a), (loss_b, state_b) = sasrec_epochs(dataset, 1), sasrec_epochs(dataset, 1)
    loss_c, state_c = sasrec_epochs(dataset, 2)
    assert loss_a == loss_b
    assert loss_c == pytest.approx(loss_a, rel=1e-4)
    for a, b, c in zip(state_a.values(), state_b.values(), state_c.values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=1e-3, atol=1e-4)


def test_known_items_bit_table_answers_as_the_binary_search() -> None:
    """The bit table (issue 12: the binary search was 1.7 s of a 15 s SASRec epoch at ML-1M)
    and the sorted-keys search it replaces agree on every pair, so the draws are the same."""
    dataset = dense_dataset(n_users=23, n_items=37)
    table, search = KnownItems(dataset), KnownItems(dataset, max_table_bytes=0)
    assert table.bits is not None and search.bits is None
    users, items = np.meshgrid(np.arange(23), np.arange(37), indexing="ij")
    answer = table.contains(users, items)
    np.testing.assert_array_equal(answer, search.contains(users, items))
    train = dataset.train_pairs()
    assert answer.sum() == len(np.unique(train, axis=0))
    assert answer[train[:, 0], train[:, 1]].all()
    shape = (23, 5, 16)
    np.testing.assert_array_equal(
        sample_negatives(np.random.default_rng(1), table, np.arange(23), shape),
        sample_negatives(np.random.default_rng(1), search, np.arange(23), shape),
    )


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ({}, {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "PASSIVE"}),
        ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "PASSIVE"}),
        ({"GOMP_SPINCOUNT": "0"}, {"GOMP_SPINCOUNT": "0", "OMP_WAIT_POLICY": None}),
    ],
)
def test_importing_the_worker_quiets_openmp_unless_the_user_chose(
    preset: dict[str, str], expected: dict[str, str | None]
) -> None:
    """quiet_openmp runs when ``worker`` is imported, before torch loads libgomp."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = "import os, json, worker; print(json.dumps({k: os.environ.get(k) for k in %r}))"
    out = subprocess.run(
        [sys.executable, "-c", code % sorted(expected)],
        env={**env, **preset},
        cwd=Path(__file__).resolve().parents[2],
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected
