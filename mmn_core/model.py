"""MultiModN: a shared state passes through one encoder per modality; every task decoder reads every state.

`MultiModN.forward` is the only implementation of encode → decode; training, evaluation, traces, Shapley
values and Captum wrappers all call it. A missing modality is skipped per record: its state row passes
through unchanged (bit-identical), and absent inputs are zero-filled before the encoder runs so that NaN in
an unselected branch never reaches an output or a gradient.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

Kind = Literal["tabular", "sequence"]
TaskType = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class ModalityDef:
    name: str
    kind: Kind
    n_features: int


@dataclass(frozen=True)
class TaskDef:
    name: str
    type: TaskType
    n_outputs: int            # 1 for binary and regression, C for multiclass
    weight: float = 1.0       # weight of this task in the loss


@dataclass(frozen=True)
class ModelConfig:
    state_size: int = 32              # S: the paper uses 32-50; small states are easier to read
    hidden: int = 64                  # width of encoder / decoder hidden layers
    dropout: float = 0.1              # on encoder hidden layers; regularizes small cohorts
    err_weight: float = 1.0           # weight of the task loss (paper: err_penalty)
    state_change_weight: float = 0.0  # weight of mean ||s_k - s_{k-1}||^2 over present steps
    presence_indicators: bool = False  # P-Fusion only: append the presence bits to the fused vector

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ModelOutput:
    """steps: ["prior", m1, ...]; states: (K+1, N, S); logits[task]: (K+1, N, C); ran: (K, N) bool."""
    steps: list[str]
    states: torch.Tensor | None
    logits: dict[str, torch.Tensor]
    ran: torch.Tensor


# --- encoders: contract (state (N, S), x, lengths) -> state (N, S) ------------------------------------------
class MLPEncoder(nn.Module):
    """Tabular: s' = s + MLP([s, x]). The residual form makes 'no change' easy to learn and to read."""

    def __init__(self, state_size: int, n_features: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_size + n_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, state_size))

    def forward(self, state: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor | None = None):
        return state + self.net(torch.cat([state, x], dim=-1))


class GRUEncoder(nn.Module):
    """Sequence (N, T, F) with lengths (N,): a GRU seeded with the incoming state, packed so records never
    mix; s' = s + Linear(h_T) where h_T is the hidden state after each record's own last step."""

    def __init__(self, state_size: int, n_features: int, hidden: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(n_features, state_size, batch_first=True)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(state_size, state_size))

    def forward(self, state: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor | None = None):
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, h = self.gru(packed, state.unsqueeze(0).contiguous())
        return state + self.out(h[0])


ENCODERS = {"tabular": MLPEncoder, "sequence": GRUEncoder}


class Decoder(nn.Module):
    """State (..., S) -> logits (..., C). Logits only; probabilities live in predict/trace helpers."""

    def __init__(self, state_size: int, n_outputs: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_size, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) bool -> broadcastable to `like` (N, ...)."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def zero_absent(x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Absent rows become exact zeros (and NaN there never reaches a gradient)."""
    return torch.where(_expand(present, x), x, torch.zeros((), dtype=x.dtype, device=x.device))


class MultiModN(nn.Module):
    kind = "multimodn"

    def __init__(self, modalities: list[ModalityDef], tasks: list[TaskDef], config: ModelConfig = ModelConfig()):
        super().__init__()
        self.modalities, self.tasks, self.config = list(modalities), list(tasks), config
        S = config.state_size
        self.init_state = nn.Parameter(torch.zeros(S))
        self.encoders = nn.ModuleDict({m.name: ENCODERS[m.kind](S, m.n_features, config.hidden, config.dropout)
                                       for m in modalities})
        self.decoders = nn.ModuleDict({t.name: Decoder(S, t.n_outputs, config.hidden) for t in tasks})

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def forward(self, x: dict[str, torch.Tensor], present: dict[str, torch.Tensor],
                lengths: dict[str, torch.Tensor] | None = None, order: list[str] | None = None) -> ModelOutput:
        """x[m]: (N, F) or (N, T, F); present[m]: (N,) bool; order: encoder names (default: spec order).

        Returns every state and every task's logits after every step: step 0 is the prior (init state)."""
        order = list(order) if order is not None else self.modality_names
        lengths = lengths or {}
        n = next(iter(present.values())).shape[0]
        s = self.init_state.expand(n, -1)
        states, ran = [s], []
        for name in order:
            p = present[name]
            s_new = self.encoders[name](s, zero_absent(x[name], p), lengths.get(name))
            s = torch.where(p[:, None], s_new, s)
            states.append(s)
            ran.append(p)
        stacked = torch.stack(states)                      # (K+1, N, S)
        logits = {t.name: self.decoders[t.name](stacked) for t in self.tasks}
        ran_t = torch.stack(ran) if ran else torch.zeros(0, n, dtype=torch.bool, device=s.device)
        return ModelOutput(["prior", *order], stacked, logits, ran_t)

    def loss(self, out: ModelOutput, y: dict[str, torch.Tensor]) -> torch.Tensor:
        """err_weight × mean task loss over every distinct state (prior + present steps) and labelled record
        + state_change_weight × mean ||s_k − s_{k−1}||² over present steps."""
        distinct = torch.cat([torch.ones_like(out.ran[:1]), out.ran]) if out.ran.numel() else \
            torch.ones(1, out.states.shape[1], dtype=torch.bool, device=out.states.device)
        err = task_loss(self.tasks, out.logits, y, distinct)
        total = self.config.err_weight * err
        if self.config.state_change_weight > 0 and out.ran.any():
            change = (out.states[1:] - out.states[:-1]).pow(2).sum(-1)     # (K, N)
            total = total + self.config.state_change_weight * change[out.ran].mean()
        return total


def task_loss(tasks: list[TaskDef], logits: dict[str, torch.Tensor], y: dict[str, torch.Tensor],
              valid: torch.Tensor) -> torch.Tensor:
    """Weighted mean of per-element losses over (step, task, labelled record) where `valid` (K+1, N) holds.

    logits[t]: (K+1, N, C); y[t]: (N,) with NaN / -1 for a missing label (masked, never imputed)."""
    total = torch.zeros((), device=valid.device)
    weight = torch.zeros((), device=valid.device)
    for t in tasks:
        lg, target = logits[t.name], y[t.name]
        k = lg.shape[0]
        if t.type == "multiclass":
            labelled = target >= 0
            tgt = target.clamp(min=0).expand(k, -1)
            el = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tgt.reshape(-1), reduction="none").view(k, -1)
        else:
            labelled = ~torch.isnan(target)
            tgt = torch.nan_to_num(target, nan=0.0).expand(k, -1)
            fn = F.binary_cross_entropy_with_logits if t.type == "binary" else F.mse_loss
            el = fn(lg[..., 0], tgt, reduction="none")
        mask = valid & labelled[None, :]
        total = total + t.weight * (el * mask).sum()
        weight = weight + t.weight * mask.sum()
    return total / weight.clamp(min=1)


def probabilities(task_type: TaskType, logits: torch.Tensor) -> torch.Tensor:
    """(…, C) logits → binary: P(positive) (…,); multiclass: (…, C); regression: the raw output (…,)."""
    if task_type == "binary":
        return torch.sigmoid(logits[..., 0])
    if task_type == "multiclass":
        return torch.softmax(logits, dim=-1)
    return logits[..., 0]
