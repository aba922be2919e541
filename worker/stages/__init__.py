"""The pipeline's stages, one module each, named as the stage (``worker.pipeline`` runs them).

Each module's function of the same name takes the :class:`worker.run.Run`, reads what earlier
stages left through its cached loaders, writes its own files (names in :mod:`core.rundir`) and
sets the loader of what it wrote. ``docs/method.md`` §1 says what each computes.
"""
