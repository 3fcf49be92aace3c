"""fit / predict: Adam, mini-batches, early stopping on a validation split, progress callback.

Training-side options that change *which modalities a record shows the model* live here, as transformations of
the presence masks of a training batch (both models accept them):
- presence balancing: per epoch, additionally skip M at random in the class where M is more often present, so
  that M's presence becomes independent of the label;
- modality dropout: skip each present modality at random with a fixed, label-independent rate;
- shuffle-order: a random encoder order per batch (MultiModN only);
- paper semantics: skip an encoder for the whole batch when any record of the batch lacks it (the official code).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, asdict
from typing import Sequence, Callable

import torch

from . import run
from .data import TensorData
from .model import ModelOutput
from .run import PAPER_BATCH, Semantics, batch_wide  # noqa: F401  (re-exported: experiments, tests)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40                    # upper bound; early stopping usually ends sooner
    batch_size: int = 256               # per-record skipping makes large batches correct
    lr: float = 2e-3                    # Adam
    weight_decay: float = 1e-5          # light L2 against overfitting small cohorts
    patience: int = 6                   # epochs without validation-loss improvement before stopping
    seed: int = 0                       # weights, batch order and random skipping
    shuffle: bool = True                # shuffle training batches (the official MNAR code did not)
    semantics: Semantics = "per-record"  # "paper": batch-wide skipping as in the official code
    shuffle_order: bool = False         # random encoder order per batch (MultiModN only)
    modality_dropout: float = 0.0       # label-independent skip rate per present modality
    balance_modalities: tuple[str, ...] = ()  # presence balancing for these modalities ...
    balance_task: str | None = None     # ... with respect to this classification task

    def to_json(self) -> dict:
        d = asdict(self)
        d["balance_modalities"] = list(self.balance_modalities)
        return d


# One vocabulary for training options against the missingness shortcut: CLI, MNAR lab and Model page alike.
MITIGATIONS = {
    "none": "None",
    "presence-balance": "Presence balancing (the shifted modality)",
    "presence-balance-all": "Presence balancing (all data)",
    "modality-dropout": "Modality dropout",
    "shuffle-order": "Random order (MultiModN)",
}


def mitigation_options(mitigation: str, modalities: Sequence[str], task: str | None,
                       dropout_rate: float = 0.3) -> dict:
    """TrainConfig fields for a mitigation. `modalities`: what "presence-balance" balances (the MNAR lab passes
    the shifted modality, the Model page every modality); `task`: the classification task balanced against."""
    if mitigation not in MITIGATIONS:
        raise ValueError(f"unknown mitigation '{mitigation}' (choose: {', '.join(MITIGATIONS)})")
    if mitigation.startswith("presence-balance"):
        if task is None:
            raise ValueError("presence balancing needs a classification task to balance against")
        return {"balance_modalities": tuple(modalities), "balance_task": task}
    if mitigation == "modality-dropout":
        return {"modality_dropout": dropout_rate}
    if mitigation == "shuffle-order":
        return {"shuffle_order": True}
    return {}


History = list[dict]
Progress = Callable[[dict], None]


def balance_presence(present: dict[str, torch.Tensor], y: torch.Tensor, modalities, gen: torch.Generator
                     ) -> dict[str, torch.Tensor]:
    """Skip M at random within each class down to the lowest per-class presence rate (labels: (N,) float with
    NaN, or long with -1, for unlabelled records, which are left alone)."""
    labelled = ~torch.isnan(y) if y.is_floating_point() else y >= 0
    classes = torch.unique(y[labelled])
    out = dict(present)
    for m in modalities:
        p = present[m]
        rates = {c.item(): p[labelled & (y == c)].float().mean().item() for c in classes}
        low = min(rates.values())
        keep = p.clone()
        for c, rate in rates.items():
            if rate > low:
                in_c = labelled & (y == c) & p
                drop = torch.rand(p.shape[0], generator=gen) < (1 - low / rate)
                keep &= ~(in_c & drop)
        out[m] = keep
    return out


def modality_dropout(present: dict[str, torch.Tensor], rate: float, gen: torch.Generator):
    return {m: p & (torch.rand(p.shape[0], generator=gen) >= rate) for m, p in present.items()}


def epoch_presence(data: TensorData, config: TrainConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The presence masks one training epoch shows the model: data.present after presence balancing and
    modality dropout (random draws from `gen`, on the CPU), on data's device."""
    present = {k: v.cpu() for k, v in data.present.items()}
    if config.balance_modalities:
        present = balance_presence(present, data.y[config.balance_task].cpu(), config.balance_modalities, gen)
    if config.modality_dropout > 0:
        present = modality_dropout(present, config.modality_dropout, gen)
    device = next(iter(data.present.values())).device
    return {k: v.to(device) for k, v in present.items()}


def predict(model, data: TensorData, batch_size: int = 1024, order: list[str] | None = None,
            semantics: Semantics = "per-record") -> ModelOutput:
    """Run the model over `data` in batches (eval mode) and concatenate: logits[t] (K+1, N, C).

    Paper semantics always run at batch 16: with batch-wide skipping the batch size changes the predictions."""
    return run.forward(model, data, batch_size, order=order, semantics=semantics)


VAL_BATCH = 8192    # rows per validation forward: no autograd, so one large batch costs least


@torch.no_grad()
def evaluate_loss(model, data: TensorData, batch_size: int = VAL_BATCH, semantics: Semantics = "per-record"
                  ) -> float:
    out = predict(model, data, batch_size, semantics=semantics)
    return float(model.loss(out, data.y))


def train_epoch(model, data: TensorData, present: dict, opt, config: TrainConfig, gen: torch.Generator,
                should_stop: Callable[[], bool] | None = None, shard: tuple[int, int] | None = None
                ) -> tuple[float, int, bool]:
    """One pass of Adam steps over `data` (already on the model's device) with the epoch's presence masks
    `present` (N,) bool each (see `epoch_presence`). Batch order and shuffled encoder orders draw from `gen`.

    shard=(rank, world): data-parallel training — every rank draws the same batches from `gen` and trains on
    its rows idx[rank::world] of each (`model` is then a DistributedDataParallel wrapper; paper semantics
    decide batch-wide skipping on the whole batch before it is split). Returns (sum of batch loss × batch
    size, records seen, cancelled by `should_stop`)."""
    core = getattr(model, "module", model)     # DDP runs forward (its gradient hooks); the module has the loss
    model.train()
    names = core.modality_names
    paper = config.semantics == "paper"
    batch_size = PAPER_BATCH if paper else config.batch_size
    shuffle = config.shuffle and not paper
    device = next(iter(present.values())).device
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    for idx in run.batches(len(data), batch_size, shuffle, gen):
        if should_stop is not None and should_stop():
            return float(total), count, True
        if idx.device != device:
            idx = idx.to(device)
        p = run.rows(present, idx)
        if paper:
            p = batch_wide(p)
        if shard is not None:
            idx = idx[shard[0]::shard[1]]
            p = run.rows(p, slice(shard[0], None, shard[1]))
        order = None
        if config.shuffle_order and core.kind == "multimodn":
            order = [names[i] for i in torch.randperm(len(names), generator=gen).tolist()]
        out = model(run.rows(data.x, idx), p, run.rows(data.lengths, idx), order)
        loss = core.loss(out, run.rows(data.y, idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * len(idx)       # no .item() per batch: it would wait for the device
        count += len(idx)
    return float(total), count, False


def optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam over all parameters; the multi-tensor (foreach) update is one set of ops for all ~50 parameter
    tensors instead of one set each (the single-tensor loop was a fifth of a step at batch 256)."""
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True)


def _shared_val_loss(model, val: TensorData, semantics: Semantics, comm) -> float:
    """Data-parallel validation: each rank scores its rows, the record-weighted mean is all-reduced, so every
    rank sees the same number and takes the same early-stopping decision."""
    rows = comm.rows(len(val))
    loss = evaluate_loss(model, val.subset(rows), semantics=semantics) if len(rows) else 0.0
    return comm.mean(loss * len(rows), len(rows))


class BestWeights:
    """Early stopping's bookkeeping, shared by `fit` and `stream.fit_stream`: log an epoch's row, keep the weights
    of the best score so far (tensor clones, not a deepcopy) and count epochs without improvement."""

    def __init__(self, history: History, progress: Progress | None, epochs: int):
        self.history, self.progress, self.epochs = history, progress, epochs
        self.score, self.state, self.bad = math.inf, None, 0

    def epoch(self, model, row: dict) -> int:
        """Record `row` (validation loss if it has one, else training loss); returns epochs without improvement."""
        self.history.append(row)
        if self.progress is not None:
            self.progress({**row, "epochs": self.epochs})
        score = row.get("val_loss", row["train_loss"])
        if score < self.score - 1e-5:
            self.score, self.bad = score, 0
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad += 1
        return self.bad

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def fit(model, train: TensorData, val: TensorData | None = None, config: TrainConfig = TrainConfig(),
        progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
        device: str | torch.device | None = None, comm=None) -> History:
    """Train in place; keep the weights of the best validation epoch. Returns one dict per epoch.

    `progress(row)` is called after every epoch; `should_stop()` lets a UI cancel between batches (the best
    weights so far are kept). `comm`: a `distributed.Comm` for data-parallel training under torchrun (every
    rank passes the same data; losses are all-reduced, so every rank stops at the same epoch)."""
    if comm is not None:
        device = comm.device
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model.to(device)
    train_d = train.to(device)
    val_d = val.to(device) if val is not None else None
    net = comm.wrap(model) if comm is not None else model
    opt = optimizer(model, config)
    history: History = []
    best = BestWeights(history, progress, config.epochs)
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        present = epoch_presence(train_d, config, gen)
        if comm is None:
            total, count, cancelled = train_epoch(net, train_d, present, opt, config, gen, should_stop)
            train_loss = total / max(count, 1)
        else:
            total, count, cancelled = train_epoch(net, train_d, present, opt, config, gen, None, comm.shard)
            train_loss = comm.mean(total, count)
        row = {"epoch": epoch, "train_loss": train_loss, "seconds": time.perf_counter() - t0}
        if val_d is not None:
            row["val_loss"] = (evaluate_loss(model, val_d, semantics=config.semantics) if comm is None
                               else _shared_val_loss(model, val_d, config.semantics, comm))
        bad = best.epoch(model, row)
        if cancelled or (val_d is not None and bad >= config.patience):
            break
    best.restore(model)
    model.eval()
    return history


# --- whole-dataset helpers (used by the CLI, the dashboard and the benchmarks) -----------------------------
def train_model(ds, kind: str = "multimodn", model_config=None, config: TrainConfig = TrainConfig(),
                rows: tuple | None = None, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None, comm=None):
    """Split (or take `rows` = (train, val, test) positions), fit preprocessing on train only, train, and score
    the test split. Returns a checkpoint.Trained whose `metrics` is the test metric matrix.

    comm: a `distributed.Comm` (under torchrun): every rank runs this with the same data; training is
    data-parallel and `info["distributed"]` records the job and whether all ranks ended on identical weights."""
    from .checkpoint import Trained, build_model
    from .data import Preprocessor, split
    from .metrics import metric_matrix
    from .model import ModelConfig
    tr, va, te = rows if rows is not None else split(ds, seed=config.seed)
    prep = Preprocessor.fit(ds.subset(tr))
    torch.manual_seed(config.seed)
    model = build_model(kind, ds.spec, prep, model_config or ModelConfig())
    data = prep.transform(ds)
    history = fit(model, data.subset(tr), data.subset(va), config, progress, should_stop, comm=comm)
    model.cpu()
    test = data.subset(te)
    out = predict(model, test, semantics=config.semantics)
    matrix = metric_matrix(out, test.y, model.tasks, prep.target_stats)
    info = {"train_config": config.to_json(), "dataset": ds.spec.name,
            "rows": {"train": len(tr), "validation": len(va), "test": len(te)},
            "test_ids": [data.ids[i] for i in te]}
    if comm is not None:
        from .distributed import gradient_bytes
        info["distributed"] = {"world_size": comm.world, "backend": comm.backend,
                               "weights_identical_across_ranks": comm.same_weights(model),
                               "gradient_bytes_per_step": gradient_bytes(model)}
    return Trained(model, ds.spec, prep, history, matrix, info)
