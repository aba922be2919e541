"""A study's results by value (docs/method.md §5): everything goes through HTTP as a browser would
send it — sign-in forms, the admin's account and study forms, each annotator's rating forms with
the CSRF token of the page — and then every figure of ``results.json`` is recomputed here from the
ratings the test posted: the rater × item cells, the distributions, Cohen's κ (plain and
quadratic) per pair and their means, Fleiss' κ, Krippendorff's ordinal α, Spearman's ρ and the
most-disagreed list. The statistics' definitions are the brute-force ones of
tests/core/test_agreement.py, each checked there against its published value."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.backend.accounts import PASSWORD, create_account
from tests.core.test_agreement import alpha_by_hand, cohen_by_hand, fleiss_by_hand

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
ANNOTATORS = ("ann1", "ann2", "ann3")


def sign_in(app_client: TestClient, username: str) -> TestClient:
    """A browser of its own, signed in through the /login form (its own CSRF cookie + field)."""
    browser = TestClient(app_client.app)
    page = browser.get("/login")
    token = CSRF_INPUT.search(page.text)
    assert page.status_code == 200 and token, page.text[:300]
    done = browser.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text[:300]
    return browser


def page_token(browser: TestClient, path: str) -> str:
    """The CSRF token a page's forms carry (what a browser submits)."""
    page = browser.get(path)
    assert page.status_code == 200, page.text[:300]
    found = CSRF_INPUT.search(page.text)
    assert found, f"{path} has no csrf_token field"
    return found.group(1)


def planned(position: int, rater: int) -> int | str | None:
    """What annotator ``rater`` does with the item at ``position``: a rating 1–4, "skip", or
    None (not rated yet). Varied enough that every statistic is defined and none is trivial."""
    if rater == 1 and position == 2:
        return "skip"
    if rater == 2 and position in (0, 5):
        return None
    return 1 + (position * (rater + 2) + rater * 3 + position // 3) % 4


def spearman_by_hand(x: list[float], y: list[float]) -> float:
    """Pearson's r of the average ranks (ties share the mean of their places)."""

    def ranks(v: list[float]) -> np.ndarray:
        arr = np.asarray(v, dtype=float)
        out = np.empty(arr.size)
        for value in np.unique(arr):
            where = np.flatnonzero(arr == value)
            below = np.count_nonzero(arr < value)
            out[where] = below + (where.size + 1) / 2
        return out

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / math.sqrt((rx**2).sum() * (ry**2).sum()))


def defined(value: float) -> float | None:
    return value if math.isfinite(value) else None


def agreement_by_hand(matrix: np.ndarray) -> dict[str, Any]:
    pairs = []
    for i in range(matrix.shape[0]):
        for j in range(i + 1, matrix.shape[0]):
            both = int((~np.isnan(matrix[i]) & ~np.isnan(matrix[j])).sum())
            kappa = {  # κ on fewer than 2 common items is reported as undefined
                kind: defined(cohen_by_hand(matrix[i], matrix[j], kind)) if both >= 2 else None
                for kind in ("unweighted", "quadratic")
            }
            pairs.append({"n": both, **kappa})
    complete = int((~np.isnan(matrix).any(axis=0)).sum())
    return {
        "pairs": pairs,
        "fleiss": defined(fleiss_by_hand(matrix, 4)),
        "fleiss_n": complete,
        "alpha": defined(alpha_by_hand(matrix, "ordinal")),
        "alpha_n": int((np.sum(~np.isnan(matrix), axis=0) >= 2).sum()),
    }


def check_agreement(got: dict[str, Any], matrix: np.ndarray) -> None:
    want = agreement_by_hand(matrix)
    assert got["annotators"] == matrix.shape[0] and got["items"] == matrix.shape[1]
    assert len(got["cohen"]["pairs"]) == len(want["pairs"])
    for g, w in zip(got["cohen"]["pairs"], want["pairs"], strict=True):
        for kind in ("unweighted", "quadratic"):
            assert g[kind]["n"] == w["n"]
            if w[kind] is None:
                assert g[kind]["value"] is None and g[kind]["reason"]
            else:
                assert g[kind]["value"] == pytest.approx(w[kind], abs=1e-9), (g["a"], g["b"], kind)
    for kind in ("unweighted", "quadratic"):
        values = [w[kind] for w in want["pairs"] if w[kind] is not None]
        mean = got["cohen"][f"mean_{kind}"]
        assert mean["value"] == pytest.approx(float(np.mean(values)), abs=1e-9)
        assert mean["n"] == len(values)
    assert got["fleiss"]["value"] == pytest.approx(want["fleiss"], abs=1e-9)
    assert got["fleiss"]["n"] == want["fleiss_n"]
    alpha = got["krippendorff_ordinal"]
    assert alpha["value"] == pytest.approx(want["alpha"], abs=1e-9)
    assert alpha["n"] == want["alpha_n"]


def distribution(values: list[int], skips: int) -> dict[str, Any]:
    return {
        "mean": pytest.approx(float(np.mean(values))),
        "n": len(values),
        "skips": skips,
        "counts": {str(v): values.count(v) for v in (1, 2, 3, 4)},
    }


def test_results_json_equals_the_ratings_posted_over_http(app_client: TestClient) -> None:
    sessions = app_client.app.state.sessions  # type: ignore[attr-defined]
    create_account(sessions, "admin", "boss")  # the first admin comes from the CLI
    admin = sign_in(app_client, "boss")
    token = page_token(admin, "/admin/accounts")
    for name in ANNOTATORS:
        made = admin.post(
            "/admin/accounts",
            data={"username": name, "password": PASSWORD, "role": "annotator", "csrf_token": token},
            follow_redirects=False,
        )
        assert made.status_code == 303, made.text[:300]
    form = {
        "run_id": "fixture", "name": "by value", "size": "12", "methods": "both",
        "annotators": ", ".join(ANNOTATORS), "csrf_token": page_token(admin, "/studies"),
    }  # fmt: skip
    made = admin.post("/studies", data=form, follow_redirects=False)
    assert made.status_code == 303, made.text[:300]
    study = made.headers["location"]
    before = admin.get(f"{study}/results.json").json()
    n_items = len(before["items"])
    assert n_items >= 6 and before["raters"] == []

    posted: dict[str, dict[int, int | None]] = {}  # annotator -> position -> value (None: skip)
    for r, name in enumerate(ANNOTATORS):
        browser = sign_in(app_client, name)
        posted[name] = {}
        for position in range(n_items):
            plan = planned(position, r)
            if plan is None:
                continue
            csrf = page_token(browser, f"{study}/annotate?n={position}")
            data = {"position": str(position), "csrf_token": csrf}
            if plan == "skip":
                data["skip_reason"] = "examples unclear"
            else:
                data["value"] = str(plan)
            sent = browser.post(f"{study}/ratings", data=data, follow_redirects=False)
            assert sent.status_code == 303, sent.text[:300]
            posted[name][position] = None if plan == "skip" else int(plan)
    # A changed mind: the last submission is the one that counts.
    browser = sign_in(app_client, "ann1")
    csrf = page_token(browser, f"{study}/annotate?n=1")
    again = browser.post(
        f"{study}/ratings", data={"position": "1", "value": "4", "csrf_token": csrf},
        follow_redirects=False,
    )  # fmt: skip
    assert again.status_code == 303
    posted["ann1"][1] = 4

    res = admin.get(f"{study}/results.json").json()
    items = res["items"]
    assert [it["position"] for it in items] == list(range(n_items))
    assert res["raters"] == list(ANNOTATORS)
    matrix = np.full((len(ANNOTATORS), n_items), np.nan)
    for r, name in enumerate(ANNOTATORS):
        for position, value in posted[name].items():
            if value is not None:
                matrix[r, position] = value
    # Every rater × item cell, and each item's summary.
    for k, it in enumerate(items):
        want_cells = {name: posted[name].get(k) for name in ANNOTATORS}
        assert it["ratings"] == want_cells, k
        known = matrix[:, k][~np.isnan(matrix[:, k])]
        assert it["n"] == known.size
        assert it["human_mean"] == pytest.approx(known.mean())
        assert it["spread"] == (pytest.approx(known.std()) if known.size >= 2 else None)

    values = [v for name in ANNOTATORS for v in posted[name].values() if v is not None]
    skips = sum(v is None for name in ANNOTATORS for v in posted[name].values())
    assert skips == 1 and res["overall"] == distribution(values, skips)

    check_agreement(res["agreement"], matrix)
    for method, got in res["per_method"].items():
        cols = [k for k, it in enumerate(items) if it["method"] == method]
        sub = matrix[:, cols]
        vals = [v for name in ANNOTATORS for p, v in posted[name].items() if p in cols]
        assert {k: got[k] for k in ("mean", "n", "skips", "counts")} == distribution(
            [v for v in vals if v is not None], sum(v is None for v in vals)
        )
        check_agreement(got["agreement"], sub)
        pairs = [(items[k]["human_mean"], items[k]["confidence"]) for k in cols]
        pairs = [(h, c) for h, c in pairs if h is not None and c is not None]
        if len(pairs) >= 3 and len({c for _, c in pairs}) > 1:
            want_rho = spearman_by_hand([h for h, _ in pairs], [c for _, c in pairs])
            assert got["spearman"]["value"] == pytest.approx(want_rho, abs=1e-9)
    assert set(res["per_method"]) == {it["method"] for it in items}
    everything = [(it["human_mean"], it["confidence"]) for it in items]
    everything = [(h, c) for h, c in everything if h is not None and c is not None]
    assert res["spearman_all"]["n"] == len(everything)
    assert res["spearman_all"]["value"] == pytest.approx(
        spearman_by_hand([h for h, _ in everything], [c for _, c in everything]), abs=1e-9
    )
    spread = [(float(matrix[:, k][~np.isnan(matrix[:, k])].std()), k) for k in range(n_items)]
    ranked = sorted((s, k) for s, k in spread if s > 0 and np.sum(~np.isnan(matrix[:, k])) >= 2)
    ranked.sort(key=lambda sk: (-sk[0], sk[1]))
    assert [r["position"] for r in res["most_disagreed"]] == [k for _, k in ranked][:10]
