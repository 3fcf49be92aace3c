"""Shared test set-up: one thread for torch (the CI machine has 2 cores), small shared fixtures. The import path
comes from `pythonpath` in pyproject.toml."""
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent     # the repository
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_small():
    """A 1,200-record synthetic cohort (all modality kinds, MNAR labs and imaging)."""
    from mmn_core import load_dataset
    return load_dataset("synthetic", n=1200, seed=0)
