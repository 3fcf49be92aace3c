"""The one place that sets torch's thread count for the CLI and the dashboard.

Small tensors: a second thread costs more in synchronization than it gains (benchmarks/interpret_speed.md), so the
default is one thread; `MMN_THREADS` overrides it (the dashboard's older `MMN_LENS_THREADS` is still read).
"""
from __future__ import annotations

import os

import torch


def use_threads(default: int = 1) -> int:
    """Set torch's intra-op threads from MMN_THREADS (or MMN_LENS_THREADS), else `default`; returns the count."""
    raw = os.environ.get("MMN_THREADS") or os.environ.get("MMN_LENS_THREADS") or str(default)
    try:
        n = max(1, int(raw))
    except ValueError:
        n = default
    torch.set_num_threads(n)
    return n
