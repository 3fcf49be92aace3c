"""Rebuild the small pretrained checkpoints shipped in data/checkpoints/ (the dashboard opens on them).

    python data/train_checkpoints.py            # all bundled datasets, both models (~1 min on 2 cores)

Seeded; each checkpoint records its split, training configuration and test metric matrix in config.json.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmn_core import ModelConfig, TrainConfig, load_dataset, save, train_model  # noqa: E402
from mmn_core.metrics import final_metrics  # noqa: E402

OUT = Path(__file__).resolve().parent / "checkpoints"
DATASETS = {"support2": {}, "star": {}, "weather": {}, "synthetic": {"n": 3000, "seed": 0}}


def main() -> None:
    torch.set_num_threads(2)
    for name, kwargs in DATASETS.items():
        ds = load_dataset(name, **kwargs)
        for kind in ("multimodn", "pfusion"):
            trained = train_model(ds, kind, ModelConfig(), TrainConfig(epochs=80, patience=10, seed=0))
            path = save(trained, OUT / f"{name}-{kind}")
            summary = {t: round(m.get("auroc", m.get("mae")), 3) for t, m in final_metrics(trained.metrics).items()}
            print(f"{path.name}: {len(trained.history)} epochs, test {summary}")


if __name__ == "__main__":
    main()
