"""Bring your own model (docs/import.md): read an import directory, refuse what does not fit
before any stage runs, and write the normalised copy the ``imported`` recommender loads.

An import directory holds ``manifest.json`` naming the files: the item embeddings [n_items, d]
(optional item bias [n_items]) with the items' ids; the user representations [n_cases, d] with,
per row, the user id and (sequential models) the history length it represents; the interactions
(user, item, timestamp[, split]) the model was trained on; optional item metadata; the source
model's own top 10 for up to 100 users; optionally the metrics it states. Every refusal is an
:class:`ImportRefused` naming the file, the row and what to fix.

The package's modules, each one step: :mod:`~worker.importer.formats` (reading the files),
:mod:`~worker.importer.export` (the manifest and every check, :func:`check_import`),
:mod:`~worker.importer.data` (interactions and representations), :mod:`~worker.importer.model`
(the source's ranking and metrics reproduced), :mod:`~worker.importer.sae` (an SAE trained
elsewhere), :mod:`~worker.importer.publish` (the normalised copy and the run).
"""

from worker.importer.export import (
    MANIFEST_KEYS,
    PREPARE,
    CheckedImport,
    check_import,
    read_manifest,
)
from worker.importer.formats import MANIFEST, ImportRefused, read_array, read_table
from worker.importer.model import (
    METRIC_TOLERANCE,
    RANKING,
    RANKING_USERS,
    TOP_N,
    ranking_check,
    read_ranking,
)
from worker.importer.publish import (
    IMPORTED_NAMES,
    existing_run_problem,
    import_config,
    import_run,
    write_normalised,
)
from worker.importer.sae import check_sae

__all__ = [
    "IMPORTED_NAMES",
    "MANIFEST",
    "MANIFEST_KEYS",
    "METRIC_TOLERANCE",
    "PREPARE",
    "RANKING",
    "RANKING_USERS",
    "TOP_N",
    "CheckedImport",
    "ImportRefused",
    "check_import",
    "check_sae",
    "existing_run_problem",
    "import_config",
    "import_run",
    "ranking_check",
    "read_array",
    "read_manifest",
    "read_ranking",
    "read_table",
    "write_normalised",
]
