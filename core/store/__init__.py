"""The one module that owns the database: ``schema``, ``reads`` and ``writes``.

The worker writes through ``writes``; the backend reads through ``reads``. Nothing else writes SQL.
"""
