"""A run's report: the paper's tables and figures on this run, built from the typed report.

The worker publishes :class:`core.reports.RunMetrics` in the run's ``metrics`` column; this
package validates it back (:func:`load_metrics`) and builds each table from attributes as plain
data (:mod:`.cells`: ``{"title", "columns", "rows": [{"label", "cells"}]}``, a cell
``{"value", "kind", ["lo", "hi"], ["why"]}``) so the page and its JSON twin carry the same
numbers; a missing value keeps a ``why`` the page shows as a tooltip. The paper's numbers for
the same recommender sit beside ours (:mod:`backend.paper`). What no table shows (keys the
worker added since, fields no table reads) goes to the bottom of the page (:mod:`.generic`),
never dropped.

- :mod:`.summary`: :func:`run_summary` (every page's run block) and :func:`headline` (the index)
- :mod:`.quality`: Table 7, reconstruction, the sweep, dataset / training / timings
- :mod:`.concepts`: Tables 3, 4, 6, 8 and Figure 5
- :mod:`.page`: the report page's whole context
"""

from backend.report.generic import leftover, metric_tables
from backend.report.page import report_context
from backend.report.summary import headline, load_metrics, run_summary

__all__ = [
    "headline",
    "leftover",
    "load_metrics",
    "metric_tables",
    "report_context",
    "run_summary",
]
