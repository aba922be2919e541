"""sweep (paper §7, Figures 7/8): one SAE per (s, k) on the same vectors; only with ``--sweep``."""

from __future__ import annotations

from core.reports import SweepRow
from core.rundir import SWEEP
from worker.cases import DEV, TEST, TRAIN
from worker.run import Run
from worker.stages.train_sae import fold_in_training_vectors, sae_config
from worker.sweep import sensitivity_sweep


def sweep(run: Run) -> None:
    if not run.config.sweep:
        run.path(SWEEP).unlink(missing_ok=True)
        run.log("  skipped (pass --sweep to run it)")
        return
    probe = run.probe
    cases, reps = probe.cases, probe.reps
    # The shipped SAE's own training vectors, fold-ins included for one-vector models
    # (docs/method.md §1.4), so the sweep's row at the run's (s, k) is trained like it.
    x_train, _ = fold_in_training_vectors(run, reps[cases.side == TRAIN])
    base = sae_config(run.config, probe.sequential, x_train.shape)
    raw = sensitivity_sweep(
        x_train, reps[cases.side == DEV], reps[cases.side == TEST], seed=run.config.seed,
        base_config=base,
    )  # fmt: skip
    rows = [SweepRow.model_validate(row) for row in raw]
    run.write_json(SWEEP, [row.to_json() for row in rows])
    for row in raw:
        run.log(
            f"  s={row['scale']:2d} k={row['k']:2d}: FVU test {row['fvu_test']:.3f}, "
            f"dead {row['dead_fraction']:.1%}"
        )
