"""Recommenders behind one contract (``base.Recommender``). Importing this package imports every
model module in it, and each ``Recommender`` subclass with a ``name`` registers itself in
``REGISTRY``: a new model is one new file here."""

import importlib
import pkgutil

from worker.recommenders.base import REGISTRY, Recommender, RecommenderConfig, recommender_class

# The modules that are machinery, not models (``train`` and ``io`` import ``worker.probe``,
# which imports this package: importing them here would be circular).
_MACHINERY = frozenset({"base", "io", "sampling", "train"})

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _MACHINERY and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["REGISTRY", "Recommender", "RecommenderConfig", "recommender_class"]
