"""Shared test set-up: one thread for torch (the CI machine has 2 cores), import path, small shared fixtures."""
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_small():
    """A 1,200-record synthetic cohort (all modality kinds, MNAR labs and imaging)."""
    from mmn_core import load_dataset
    return load_dataset("synthetic", n=1200, seed=0)
