"""Plotly figures, built in Python and handed to pages as JSON (``fig.to_plotly_json()``).

Layouts use ``template="none"`` plus a few explicit styles: a named template is deep-copied into
every figure (~8 kB of JSON and ~1 ms each), and pages must stay fast (benchmarks/serve.py).
Shapes are given in the layout, not via ``add_vline``, which costs ~1.5 ms per line.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from backend.numbers import words
from core.reports import VERIFIED_CONFIDENCE
from core.store.schema import Latent

Figure = dict[str, Any]
_AXIS = {"gridcolor": "#eaeef2", "zerolinecolor": "#d0d7de", "linecolor": "#d0d7de"}
_COLORS = ["#0b62c4", "#d1242f", "#1a7f37", "#9a6700", "#8250df"]
# Legends sit above the plot area, anchored by their bottom edge, so however many rows they
# wrap to they grow upwards into the (auto-expanded) top margin and never cover a trace.
_LEGEND = {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"}


def _layout(xtitle: str, ytitle: str, height: int = 260, **extra: Any) -> dict[str, Any]:
    return {
        "template": "none",
        "height": height,
        "margin": {"l": 55, "r": 15, "t": 10, "b": 45},
        "colorway": _COLORS,
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "xaxis": {**_AXIS, "title": {"text": xtitle}},
        "yaxis": {**_AXIS, "title": {"text": ytitle}},
        **extra,
    }


def activation_histogram(latent: Latent) -> Figure | None:
    """Non-zero activations as bars, level edges as dotted lines (docs/method.md §1.6). None: no
    data."""
    edges = (latent.histogram or {}).get("edges") or []
    counts = (latent.histogram or {}).get("counts") or []
    if not counts or len(edges) != len(counts) + 1:
        return None
    lines = [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": edge,
            "x1": edge,
            "y0": 0,
            "y1": 1,
            "line": {"dash": "dot", "width": 1, "color": "#8c959f"},
        }
        for edge in latent.level_edges or []
    ]
    fig = go.Figure(
        go.Bar(
            x=[(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)],
            y=counts,
            width=[b - a for a, b in zip(edges[:-1], edges[1:], strict=True)],
            name="cases",
            hovertemplate="activation %{x:.3g}<br>%{y} cases<extra></extra>",
        ),
        layout=_layout("activation (dotted: level edges)", "cases", shapes=lines, bargap=0.05),
    )
    return fig.to_plotly_json()


def tuning_curve(tuning: dict[str, Any]) -> Figure | None:
    """Presence of the concept in the top 10 vs the latent's scale (paper §8, Table 8).

    Plots every list in ``tuning`` as long as ``tuning["scales"]`` (e.g. ``related`` and
    ``other``), so new series the worker adds show up without a change here.
    """
    scales = tuning.get("scales") or []
    series = {
        key: value
        for key, value in tuning.items()
        if key != "scales" and isinstance(value, list) and scales and len(value) == len(scales)
    }
    if not series:
        return None
    fig = go.Figure(
        [
            go.Scatter(x=scales, y=ys, mode="lines+markers", name=words(key))
            for key, ys in series.items()
        ],
        layout=_layout(
            "activation scale",
            "presence ratio in top 10",
            height=280,
            legend=_LEGEND,
        ),
    )
    return fig.to_plotly_json()


def confidence_distribution(values: dict[str, list[float]]) -> Figure | None:
    """Latents' best confidence per method (paper Figure 2). None: nothing verified yet."""
    traces = [
        go.Histogram(
            x=values[method],
            name=label,
            xbins={"start": -0.05, "end": 1.05, "size": 0.1},
            opacity=0.75,
        )
        for method, label in (("tfidf", "TF-IDF"), ("llm", "LLM"))
        if values.get(method)
    ]
    if not traces:
        return None
    fig = go.Figure(
        traces,
        layout=_layout(
            "confidence",
            "latents",
            height=280,
            barmode="overlay",
            legend=_LEGEND,
        ),
    )
    fig.update_xaxes(range=[-0.05, 1.05])
    return fig.to_plotly_json()


def confidence_bars(figure2: dict[str, Any]) -> Figure | None:
    """Paper Figure 2 from the report: confidence histogram per representation (``sae``,
    ``base``: ``{"edges": [B+1], "counts": [B], "n_unverified"}``) as grouped bars."""
    labels = {"sae": "SAE latents", "base": "Base dimensions"}
    traces = []
    for key, part in figure2.items():
        edges, counts = part.get("edges") or [], part.get("counts") or []
        if not counts or len(edges) != len(counts) + 1:
            continue
        unverified = part.get("n_unverified")
        name = labels.get(key, key)
        if unverified:
            name += f" ({unverified:,} without a confidence)"
        traces.append(
            go.Bar(
                x=[(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)],
                y=counts,
                name=name,
                hovertemplate="confidence %{x:.2f}<br>%{y} latents<extra></extra>",
            )
        )
    if not traces:
        return None
    line = {
        "type": "line",
        "xref": "x",
        "yref": "paper",
        "x0": VERIFIED_CONFIDENCE,
        "x1": VERIFIED_CONFIDENCE,
        "y0": 0,
        "y1": 1,
        "line": {"dash": "dot", "width": 1, "color": "#8c959f"},
    }
    fig = go.Figure(
        traces,
        layout=_layout(
            f"confidence (dotted: {VERIFIED_CONFIDENCE:g}, verified)",
            "latents",
            height=280,
            barmode="group",
            shapes=[line],
            legend=_LEGEND,
        ),
    )
    fig.update_xaxes(range=[0, 1])
    return fig.to_plotly_json()


def hit_ratio_by_level(series: dict[str, dict[str, Any]]) -> Figure | None:
    """Paper Figure 5: the concept's hit ratio in the top-1 item by activation level, one line
    per binning (``{label: {"levels", "hit_ratio", "n", "global"}}``), each global rate as a
    dashed line of the same colour. None where no level has a hit ratio (nothing verified)."""
    traces = []
    for i, (label, part) in enumerate(series.items()):
        levels, ratio = part.get("levels") or [], part.get("hit_ratio") or []
        if not any(r is not None for r in ratio):
            continue
        color = _COLORS[i % len(_COLORS)]
        traces.append(
            go.Scatter(
                x=levels,
                y=ratio,
                customdata=part.get("n"),
                mode="lines+markers",
                name=label,
                line={"color": color},
                hovertemplate="level %{x}: %{y:.3f} (%{customdata} cases)<extra></extra>",
            )
        )
        if part.get("global") is not None:
            traces.append(
                go.Scatter(
                    x=[min(levels), max(levels)],
                    y=[part["global"], part["global"]],
                    mode="lines",
                    name=f"{label}: global",
                    line={"color": color, "dash": "dash", "width": 1},
                    hovertemplate="global %{y:.3f}<extra></extra>",
                )
            )
    if not traces:
        return None
    fig = go.Figure(
        traces,
        layout=_layout(
            "activation level",
            "concept hit ratio in top 1",
            height=300,
            legend=_LEGEND,
        ),
    )
    fig.update_xaxes(dtick=1)
    return fig.to_plotly_json()


def sweep_lines(
    rows: list[dict[str, Any]], x: str, group: str, y: str, ytitle: str
) -> Figure | None:
    """Paper Figures 7/8: ``y`` against ``x`` (``scale`` or ``k``), one line per ``group``
    value, from the sensitivity sweep's rows. With ``y == "fvu_test"`` and ``x == "k"`` the
    PCA-k baseline (which depends on k only) is drawn dotted."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get(x) is not None and row.get(group) is not None:
            groups.setdefault(row[group], []).append(row)
    if not groups:
        return None
    traces = []
    for value, members in sorted(groups.items()):
        members = sorted(members, key=lambda r: r[x])
        traces.append(
            go.Scatter(
                x=[r[x] for r in members],
                y=[r.get(y) for r in members],
                mode="lines+markers",
                name=f"{group} = {value}",
            )
        )
    if y == "fvu_test" and x == "k":
        pca = {r[x]: r["pca_fvu_test"] for r in rows if r.get("pca_fvu_test") is not None}
        if pca:
            traces.append(
                go.Scatter(
                    x=sorted(pca),
                    y=[pca[v] for v in sorted(pca)],
                    mode="lines+markers",
                    name="PCA-k",
                    line={"dash": "dot", "color": "#6e7781"},
                )
            )
    fig = go.Figure(
        traces,
        layout=_layout(
            x if x == "k" else "scale s (latents = s × d)",
            ytitle,
            height=260,
            legend=_LEGEND,
        ),
    )
    fig.update_xaxes(type="log", tickvals=sorted({r[x] for r in rows if r.get(x) is not None}))
    return fig.to_plotly_json()
