"""Recommenders behind one contract (``base.Recommender``); importing this package fills
``REGISTRY`` with every model: mostpop, bprmf, lightgcn, sasrec, timirec."""

from worker.recommenders import bprmf, lightgcn, mostpop, sasrec, timirec  # noqa: F401 - register
from worker.recommenders.base import REGISTRY, Recommender, register

__all__ = ["REGISTRY", "Recommender", "register"]
