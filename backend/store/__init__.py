"""The one module that owns the database: schema (``schema``), reads (``reads``), writes (``writes``).

The worker writes through ``writes``; the backend reads through ``reads``. Nothing else writes SQL.
"""
