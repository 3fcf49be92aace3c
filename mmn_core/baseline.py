"""P-Fusion: the parallel baseline. Encode every modality, concatenate, decode once.

A missing modality is zero-filled after standardization (mean imputation, as the paper's baseline) and still
encoded; `ModelConfig.presence_indicators` appends the presence bits. Returns the same `ModelOutput` as
MultiModN with a single step ("all modalities") so training, metrics and checkpoints are shared.
"""
from __future__ import annotations

import torch
from torch import nn

from .model import ModalityDef, ModelConfig, ModelOutput, TaskDef, task_loss, zero_absent


class _TabularEmbed(nn.Module):
    def __init__(self, n_features: int, size: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, size), nn.ReLU())

    def forward(self, x, lengths=None):
        return self.net(x)


class _SequenceEmbed(nn.Module):
    def __init__(self, n_features: int, size: int, hidden: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(n_features, size, batch_first=True)

    def forward(self, x, lengths=None):
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        return self.gru(packed)[1][0]


class PFusion(nn.Module):
    kind = "pfusion"

    def __init__(self, modalities: list[ModalityDef], tasks: list[TaskDef], config: ModelConfig = ModelConfig()):
        super().__init__()
        self.modalities, self.tasks, self.config = list(modalities), list(tasks), config
        S, H = config.state_size, config.hidden
        embed = {"tabular": _TabularEmbed, "sequence": _SequenceEmbed}
        self.embedders = nn.ModuleDict({m.name: embed[m.kind](m.n_features, S, H, config.dropout)
                                        for m in modalities})
        fused = S * len(modalities) + (len(modalities) if config.presence_indicators else 0)
        self.heads = nn.ModuleDict({t.name: nn.Sequential(nn.Linear(fused, H), nn.ReLU(), nn.Dropout(config.dropout),
                                                          nn.Linear(H, t.n_outputs)) for t in tasks})

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def forward(self, x: dict[str, torch.Tensor], present: dict[str, torch.Tensor],
                lengths: dict[str, torch.Tensor] | None = None, order: list[str] | None = None) -> ModelOutput:
        """Same inputs as MultiModN.forward (order is ignored: fusion is parallel); logits[t]: (1, N, C)."""
        lengths = lengths or {}
        parts = [self.embedders[m](zero_absent(x[m], present[m]), lengths.get(m)) for m in self.modality_names]
        if self.config.presence_indicators:
            parts.append(torch.stack([present[m].float() for m in self.modality_names], dim=1))
        fused = torch.cat(parts, dim=-1)
        logits = {t.name: self.heads[t.name](fused).unsqueeze(0) for t in self.tasks}
        ran = torch.stack([present[m] for m in self.modality_names])
        return ModelOutput(["all modalities"], None, logits, ran)

    def loss(self, out: ModelOutput, y: dict[str, torch.Tensor]) -> torch.Tensor:
        valid = torch.ones(1, out.ran.shape[1], dtype=torch.bool, device=out.ran.device)
        return self.config.err_weight * task_loss(self.tasks, out.logits, y, valid)
