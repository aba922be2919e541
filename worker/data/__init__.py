"""Data: read a local dataset (``readers``), prepare it (``preprocess``), plant one (``synthetic``).

The contract types live in ``worker.data.dataset``: ``RawDataset`` (what a reader returns) and
``Dataset`` (what every later stage reads).
"""

from worker.data.dataset import Dataset, RawDataset
from worker.data.preprocess import PrepareConfig, k_core, ordered_ids, preprocess
from worker.data.readers import READERS, DataFormatError, read_dataset
from worker.data.synthetic import (
    PlantedTruth,
    SyntheticConfig,
    generate,
    ml1m_shape,
    write_generic_csv,
)

__all__ = [
    "READERS",
    "DataFormatError",
    "Dataset",
    "PlantedTruth",
    "PrepareConfig",
    "RawDataset",
    "SyntheticConfig",
    "generate",
    "k_core",
    "ml1m_shape",
    "ordered_ids",
    "preprocess",
    "read_dataset",
    "write_generic_csv",
]
