"""Recommenders behind one contract (``base.Recommender``). Importing this package imports every
model module in it, and each ``Recommender`` subclass with a ``name`` registers itself in
``REGISTRY``: a new model is one new file here."""

import importlib

from worker.config import recommender_modules
from worker.recommenders.base import REGISTRY, Recommender, RecommenderConfig, recommender_class

# Every model module (the machinery is left out: ``train`` and ``io`` import ``worker.probe``,
# which imports this package, so importing them here would be circular).
for _module in recommender_modules():
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["REGISTRY", "Recommender", "RecommenderConfig", "recommender_class"]
