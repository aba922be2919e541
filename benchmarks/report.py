"""Benchmark: the paper's report on the demo data for all four recommenders (issue 4).

Tables 3 (intra/inter-latent similarity), 4 (verified TF-IDF concepts), 7 (NDCG@10 of the
model with x replaced by the SAE's / the dense AE's reconstruction), SAE against Base. Targets:
for every model the SAE beats Base on intra (higher), inter (lower) and verified concepts; the
SAE keeps more NDCG@10 than the AE; LightGCN and TiMiRec beat MostPop. Per model also the null
of docs/method.md §1.11: ``verified_tfidf`` (SAE latents with TF-IDF confidence >= 0.8),
``verified_tfidf_over_null`` (also above their permutation null's p95: verified) and
``null_p95_tfidf`` (the median over latents of that p95), with the median TF-IDF margin.

    .venv/bin/python benchmarks/report.py [--models bprmf lightgcn sasrec timirec] [--fresh]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json

from common import add_run_arguments, demo_runs, read

from core.rundir import REPORT, SAE_REPORT


def _ndcg(table7: dict, name: str) -> float:
    return table7[name]["ndcg@10"]["mean"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_run_arguments(parser, ["bprmf", "lightgcn", "sasrec", "timirec"])
    args = parser.parse_args()
    figures = {}
    for model, run in demo_runs(args).items():
        report = read(run, REPORT)
        t3, t4, t7 = report["table3"], report["table4"], report["table7"]
        base = _ndcg(t7, "base")
        f = {
            "intra": {"base": t3["base"]["intra"], "sae": t3["sae"]["intra"]},
            "inter": {"base": t3["base"]["inter"], "sae": t3["sae"]["inter"]},
            "verified": {
                "base": t4["base"]["latents_verified"],
                "sae": t4["sae"]["latents_verified"],
            },
            "ndcg@10": {k: _ndcg(t7, k) for k in ("mostpop", "base", "sae", "random_sae", "ae")},
            "n_latents": read(run, SAE_REPORT)["n_latents"],
        }
        sae_report = read(run, SAE_REPORT)
        # docs/method.md §1.4: the paired dev-NDCG veto at the selected checkpoint
        f["veto"] = {
            key: sae_report.get(key)
            for key in ("veto", "score_tolerance", "dev_score", "vetoed_lower_fvu", "best_epoch")
        }
        null = (report.get("null") or {}).get("tfidf", {})
        sae_null, base_null = null.get("sae", {}), null.get("base", {})
        f["verified_tfidf"] = sae_null.get("confident")
        f["verified_tfidf_over_null"] = sae_null.get("verified")
        f["null_p95_tfidf"] = sae_null.get("null_p95_median")
        f["margin_tfidf"] = sae_null.get("margin_median")
        f["base_verified_tfidf_over_null"] = base_null.get("verified")
        f["sae_retained"] = f["ndcg@10"]["sae"] / base
        f["ae_retained"] = f["ndcg@10"]["ae"] / base

        def beats(a: float | None, b: float | None, higher: bool) -> bool | None:
            if a is None or b is None:
                return None  # no verified latent on one side: nothing to compare
            return a > b if higher else a < b

        f["checks"] = {
            "intra_sae_gt_base": beats(f["intra"]["sae"], f["intra"]["base"], True),
            "inter_sae_lt_base": beats(f["inter"]["sae"], f["inter"]["base"], False),
            "verified_sae_gt_base": f["verified"]["sae"] > f["verified"]["base"],
            "sae_keeps_more_than_ae": f["ndcg@10"]["sae"] > f["ndcg@10"]["ae"],
            "beats_mostpop": f["ndcg@10"]["base"] > f["ndcg@10"]["mostpop"],
        }
        figures[model] = f

    def cell(x: float | None) -> str:
        return "   —  " if x is None else f"{x:6.3f}"

    print(f"\n{'model':9} {'latents':>7} | {'intra base→SAE':>15} | {'inter base→SAE':>15} | "
          f"{'verified':>10} | NDCG@10 pop / base / SAE / AE        | checks")  # fmt: skip
    for model, f in figures.items():
        n = f["ndcg@10"]
        failed = [k for k, v in f["checks"].items() if v is False]
        intra, inter = f["intra"], f["inter"]
        print(f"{model:9} {f['n_latents']:>7} | {cell(intra['base'])}→{cell(intra['sae'])}"
              f" | {cell(inter['base'])}→{cell(inter['sae'])} | "
              f"{f['verified']['base']:>4}→{f['verified']['sae']:<4} | {n['mostpop']:.4f} / "
              f"{n['base']:.4f} / {n['sae']:.4f} / {n['ae']:.4f} | "
              f"{'all met' if not failed else 'missed: ' + ', '.join(failed)}")  # fmt: skip
    for model, f in figures.items():
        print(f"{model:9} TF-IDF confidence >= 0.8: {f['verified_tfidf']}, also above the "
              f"null's p95: {f['verified_tfidf_over_null']} (median null p95 "
              f"{f['null_p95_tfidf']}, median margin {f['margin_tfidf']})")  # fmt: skip
    print(json.dumps({"benchmark": "report", "models": figures}))


if __name__ == "__main__":
    main()
