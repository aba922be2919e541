"""The worker computes: data -> recommender -> SAE -> interpretation -> metrics -> database.

The pipeline reads like a table of contents (see ``worker.pipeline``): ``prepare ->
train_recommender -> probe -> train_sae -> record -> interpret -> evaluate -> publish``.
"""

from worker.threads import quiet_openmp

quiet_openmp()  # before any worker module imports torch (worker/threads.py)
