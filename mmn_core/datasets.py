"""The bundled datasets by name: `data/<name>/spec.yaml`, plus the seeded `synthetic` generator.

A module of its own so that `data` (loading and preprocessing) and `synthetic` (which builds a Dataset) do
not import each other.
"""
from __future__ import annotations

from .data import DATA_DIR, Dataset, load_data
from .spec import SpecError, load_spec
from .synthetic import make_synthetic


def bundled_names() -> list[str]:
    names = sorted(p.parent.name for p in DATA_DIR.glob("*/spec.yaml"))
    return names + ["synthetic"]


def load_dataset(name: str, **synthetic_kwargs) -> Dataset:
    """A bundled dataset by name (`data/<name>/spec.yaml`), or the seeded `synthetic` generator."""
    if name == "synthetic":
        return make_synthetic(**synthetic_kwargs)
    spec_path = DATA_DIR / name / "spec.yaml"
    if not spec_path.is_file():
        raise SpecError(f"unknown dataset '{name}' (bundled: {', '.join(bundled_names())})")
    spec = load_spec(spec_path)
    if spec.data is None:
        raise SpecError(f"{spec_path}: bundled spec needs a 'data' key")
    return load_data(spec.resolve(spec.data), spec)
