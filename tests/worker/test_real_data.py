"""On the shipped demo data: the preprocessing of docs/method.md §1.1 feeds a recommender that beats
the popularity floor (docs/method.md §1.2), deterministically for a seed."""

from __future__ import annotations

import pytest

from core.settings import REPO_ROOT
from worker.cases import TEST
from worker.data import preprocess, read_dataset
from worker.metrics.ranking import hit_ndcg
from worker.probe import evaluate
from worker.recommenders.train import build_recommender, default_config, train_recommender

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo():
    return preprocess(
        read_dataset("movielens-latest", REPO_ROOT / "data" / "ml-latest-small"), log=None
    )


def test_bprmf_beats_mostpop_on_the_demo_data(demo) -> None:
    model, report = train_recommender(demo, "bprmf", default_config("bprmf"), progress=False)
    mostpop = build_recommender("mostpop", demo.n_users, demo.n_items, default_config("mostpop"))
    mostpop.prepare(demo)
    floor = hit_ndcg(evaluate(mostpop, demo, TEST))
    assert floor["hr@10"] == pytest.approx(0.0449, abs=1e-4)  # docs/method.md §2: MostPop HR@10
    assert report["test"]["ndcg@10"] > floor["ndcg@10"]
    again, report2 = train_recommender(demo, "bprmf", default_config("bprmf"), progress=False)
    assert report2["test"] == report["test"]  # seeded: the same numbers twice
