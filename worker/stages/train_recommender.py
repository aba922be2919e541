"""train_recommender: train the run's model, early-stopped on dev, beside MostPop (docs/method.md
§1.2)."""

from __future__ import annotations

from core.jsonsafe import jsonable
from core.reports import RecommenderReport
from core.rundir import RECOMMENDER_REPORT
from worker.cases import TEST
from worker.device import resolve_device
from worker.metrics.ranking import ranking_report
from worker.probe import evaluate
from worker.recommenders.io import save_recommender
from worker.recommenders.train import build_recommender, default_config
from worker.recommenders.train import train_recommender as train
from worker.run import Run


def train_recommender(run: Run) -> None:
    cfg = run.config
    dataset = run.dataset
    config = default_config(cfg.recommender, **{"seed": cfg.seed, **cfg.recommender_overrides})
    model, raw = train(dataset, cfg.recommender, config, device=resolve_device(run.settings.device))
    save_recommender(model, config, run.dir)

    # MostPop: the floor every model must beat (docs/method.md §1.2).
    mostpop = build_recommender("mostpop", dataset.n_users, dataset.n_items, config)
    mostpop.prepare(dataset)
    raw["mostpop_test_ci"] = ranking_report(evaluate(mostpop, dataset, TEST), seed=cfg.seed)
    raw.update(model.report_extras())  # an imported model: its source and checks (docs/import.md)
    report = RecommenderReport.model_validate(jsonable(raw))
    run.write_report(RECOMMENDER_REPORT, report)
    run.log(
        f"  {cfg.recommender}: test NDCG@10 {report.test['ndcg@10']:.4f} "
        f"(MostPop {report.mostpop_test_ci['ndcg@10'].mean:.4f})"
    )
