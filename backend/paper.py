"""The RecSAE paper's MovieLens-1M numbers, to show beside a run's own (docs/method.md §2).

Transcribed from the paper's tables (k = 8, s = 16; docs/method.md §2). Each table names where it
comes from, so a reader can check a number against the paper. The paper reports Table 6 and
Figure 5 for BPRMF and SASRec only, and Table 8 for SASRec only; :func:`for_recommender` says so
instead of inventing a value.
"""

from __future__ import annotations

from typing import Any

PAPER = "RecSAE paper"
DATASET = "MovieLens-1M"
SETTING = "k = 8, s = 16, 1,024 latents"
MODELS = ("bprmf", "lightgcn", "sasrec", "timirec")

# Table 7, "MovieLens" columns: NDCG@10 / NDCG@20 of the base model, the dense AE (8 hidden
# units) and the model with x replaced by the SAE's reconstruction. The paper gives no HR here.
TABLE7: dict[str, dict[str, dict[str, float]]] = {
    "bprmf": {
        "base": {"ndcg@10": 0.0382, "ndcg@20": 0.0530},
        "ae": {"ndcg@10": 0.0313, "ndcg@20": 0.0429},
        "sae": {"ndcg@10": 0.0355, "ndcg@20": 0.0499},
    },
    "lightgcn": {
        "base": {"ndcg@10": 0.0373, "ndcg@20": 0.0516},
        "ae": {"ndcg@10": 0.0320, "ndcg@20": 0.0444},
        "sae": {"ndcg@10": 0.0373, "ndcg@20": 0.0505},
    },
    "sasrec": {
        "base": {"ndcg@10": 0.1049, "ndcg@20": 0.1302},
        "ae": {"ndcg@10": 0.0441, "ndcg@20": 0.0584},
        "sae": {"ndcg@10": 0.0973, "ndcg@20": 0.1205},
    },
    "timirec": {
        "base": {"ndcg@10": 0.1119, "ndcg@20": 0.1369},
        "ae": {"ndcg@10": 0.0490, "ndcg@20": 0.0649},
        "sae": {"ndcg@10": 0.1083, "ndcg@20": 0.1333},
    },
}

# Table 3, "MovieLens" columns: intra-latent (higher is better) and inter-latent (lower is
# better) similarity of latents with confidence >= 0.8; Base = the model's 64 raw dimensions.
TABLE3: dict[str, dict[str, dict[str, float]]] = {
    "bprmf": {
        "base": {"intra": 0.1804, "inter": 0.4740},
        "sae": {"intra": 0.3795, "inter": 0.2998},
    },
    "lightgcn": {
        "base": {"intra": 0.4430, "inter": 0.2938},
        "sae": {"intra": 0.6225, "inter": 0.2704},
    },
    "sasrec": {
        "base": {"intra": 0.4452, "inter": 0.2071},
        "sae": {"intra": 0.6980, "inter": 0.1745},
    },
    "timirec": {
        "base": {"intra": 0.5119, "inter": 0.2303},
        "sae": {"intra": 0.6564, "inter": 0.1895},
    },
}

# Table 4, "MovieLens" columns: P >= 0.8 and All, per method (TF-IDF, LLM = Llama-3-8B-Instruct)
# and representation. The paper calls them "unique concepts", yet its Base "All" for the LLM is
# 64 = the number of dimensions, so they read like counts of latents.
TABLE4: dict[str, dict[str, dict[str, dict[str, int]]]] = {
    "bprmf": {
        "tfidf": {"base": {"verified": 0, "all": 58}, "sae": {"verified": 14, "all": 505}},
        "llm": {"base": {"verified": 2, "all": 64}, "sae": {"verified": 138, "all": 1019}},
    },
    "lightgcn": {
        "tfidf": {"base": {"verified": 7, "all": 46}, "sae": {"verified": 42, "all": 409}},
        "llm": {"base": {"verified": 8, "all": 64}, "sae": {"verified": 92, "all": 701}},
    },
    "sasrec": {
        "tfidf": {"base": {"verified": 7, "all": 50}, "sae": {"verified": 53, "all": 508}},
        "llm": {"base": {"verified": 4, "all": 64}, "sae": {"verified": 111, "all": 970}},
    },
    "timirec": {
        "tfidf": {"base": {"verified": 4, "all": 45}, "sae": {"verified": 34, "all": 485}},
        "llm": {"base": {"verified": 7, "all": 64}, "sae": {"verified": 81, "all": 804}},
    },
}

# Table 6, MovieLens: features named by verified TF-IDF concepts, count (coverage).
TABLE6: dict[str, dict[str, dict[str, float]]] = {
    "bprmf": {
        "genres": {"n_covered": 17, "coverage": 0.94},
        "tags_single_term": {"n_covered": 31, "coverage": 0.15},
        "tags_all": {"n_covered": 61, "coverage": 0.11},
    },
    "sasrec": {
        "genres": {"n_covered": 16, "coverage": 0.89},
        "tags_single_term": {"n_covered": 55, "coverage": 0.27},
        "tags_all": {"n_covered": 109, "coverage": 0.20},
    },
}

# §5.3 / Figure 5: the global concept hit ratio in the top-1 item (the red line).
FIGURE5_GLOBAL: dict[str, float] = {"bprmf": 0.016, "sasrec": 0.043}

# Table 8, MovieLens row (SASRec only): presence ratio in the top 10 at -10x, 1x, +10x.
TABLE8: dict[str, dict[str, list[float]]] = {
    "sasrec": {
        "scales": [-10, 1, 10],
        "related": [0.038, 0.357, 0.475],
        "other": [0.024, 0.029, 0.027],
    },
}

SOURCES = {
    "table3": "Table 3, §5.1",
    "table4": "Table 4, §5.2.1",
    "table6": "Table 6, §5.2.3",
    "figure5": "Figure 5, §5.3",
    "table7": "Table 7, §6",
    "table8": "Table 8, §8.2",
}


def _entry(table: str, data: dict[str, Any], model: str) -> dict[str, Any]:
    """One table's paper numbers for ``model``: the model's own, else the nearest the paper has
    (flagged with ``model`` and a ``note``), so the page never shows another model's numbers
    as if they were this one's."""
    source = f"{PAPER}, {SOURCES[table]}, {DATASET}"
    if model in data:
        return {"source": source, "model": model, "values": data[model], "note": None}
    if table == "table8":
        return {
            "source": source,
            "model": "sasrec",
            "values": data["sasrec"],
            "note": "the paper reports targeted tuning for SASRec only",
        }
    known = ", ".join(sorted(data))
    return {
        "source": source,
        "model": None,
        "values": None,
        "note": f"the paper reports this for {known} only",
    }


def for_recommender(recommender: str) -> dict[str, Any]:
    """The paper's MovieLens-1M numbers for one of :data:`MODELS`, per table.

    Returns ``{"dataset", "setting", "model", "known", "table3"..."table8": {"source", "model",
    "values", "note"}}``; ``known`` is False for a recommender the paper did not study (every
    ``values`` is then None and ``note`` says so).
    """
    model = recommender.lower()
    tables: dict[str, dict[str, Any]] = {
        "table3": TABLE3,
        "table4": TABLE4,
        "table6": TABLE6,
        "figure5": FIGURE5_GLOBAL,
        "table7": TABLE7,
        "table8": TABLE8,
    }
    if model not in MODELS:
        note = f"the paper does not study {recommender!r} (it has {', '.join(MODELS)})"
        entries = {
            name: {
                "source": f"{PAPER}, {SOURCES[name]}",
                "model": None,
                "values": None,
                "note": note,
            }
            for name in tables
        }
        return {"dataset": DATASET, "setting": SETTING, "model": None, "known": False, **entries}
    return {
        "dataset": DATASET,
        "setting": SETTING,
        "model": model,
        "known": True,
        **{name: _entry(name, data, model) for name, data in tables.items()},
    }
