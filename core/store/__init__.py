"""The one module that owns the database: ``schema``, ``reads`` and ``writes``.

The worker writes through ``writes``; the backend reads through ``reads``. Nothing else writes SQL.
"""

# Every table on ``schema.Base.metadata``, whichever module a caller imports first (migrations
# compare the whole metadata with the database).
from core.store import jobs as _jobs  # noqa: E402, F401
