"""Data-parallel training (mmn_core/distributed.py): a 2-process gloo run under torchrun gives the
single-process AUROC and identical weights on every rank; the shards of a batch are exactly the single-process
batch; every parameter gets a gradient in every step (so DDP needs no find_unused_parameters)."""
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from mmn_core import ModelConfig, Preprocessor, TrainConfig, load, load_dataset, train_model
from mmn_core.checkpoint import build_model
from mmn_core.train import epoch_presence, optimizer, train_epoch

from conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["multimodn", "pfusion"])
def test_every_parameter_gets_a_gradient_when_a_modality_is_absent_from_the_whole_batch(synthetic_small, kind):
    """DDP without find_unused_parameters fails on a step where a parameter gets no gradient. Per-record
    skipping masks absent rows instead of skipping the encoder, so even a batch lacking a modality entirely
    reaches every parameter."""
    ds = synthetic_small.subset(list(range(64)))
    prep = Preprocessor.fit(ds)
    torch.manual_seed(0)
    model = build_model(kind, ds.spec, prep, ModelConfig(state_size=8, hidden=16)).train()
    data = prep.transform(ds)
    names = model.modality_names
    present = dict(data.present)
    present[names[0]] = torch.zeros(len(data), dtype=torch.bool)         # nobody has it
    present[names[1]] = torch.arange(len(data)) % 2 == 0                  # half have it
    out = model(data.x, present, data.lengths)
    model.loss(out, data.y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


class _Recorder(torch.nn.Module):
    """Delegates to a MultiModN and records which rows each forward saw (x['rowid'] holds the row number)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen, self.kind = inner, [], inner.kind
        self.modality_names = inner.modality_names

    def forward(self, x, present, lengths=None, order=None):
        self.seen.append(x["rowid"][:, 0].long().tolist())
        return self.inner({k: v for k, v in x.items() if k != "rowid"}, present, lengths, order)

    def loss(self, out, y):
        return self.inner.loss(out, y)


def test_shards_of_every_batch_are_the_single_process_batch(synthetic_small):
    ds = synthetic_small.subset(list(range(203)))
    prep = Preprocessor.fit(ds)
    data = prep.transform(ds)
    data.x["rowid"] = torch.arange(len(data), dtype=torch.float32)[:, None]
    cfg = TrainConfig(batch_size=32, seed=3, modality_dropout=0.3)
    seen = {}
    for shard in [None, (0, 2), (1, 2)]:
        torch.manual_seed(0)
        rec = _Recorder(build_model("multimodn", ds.spec, prep, ModelConfig(state_size=8, hidden=16)))
        gen = torch.Generator().manual_seed(cfg.seed)
        present = epoch_presence(data, cfg, gen)
        train_epoch(rec, data, present, optimizer(rec.inner, cfg), cfg, gen, shard=shard)
        seen[shard] = (rec.seen, present)
    single, p_single = seen[None]
    (r0, p0), (r1, p1) = seen[(0, 2)], seen[(1, 2)]
    assert len(single) == len(r0) == len(r1) == 7                       # ceil(203 / 32) steps on every rank
    for b, rows in enumerate(single):
        assert sorted(r0[b] + r1[b]) == sorted(rows) and not set(r0[b]) & set(r1[b])
    for m in p_single:                                                 # modality dropout decided per record
        assert torch.equal(p_single[m], p0[m]) and torch.equal(p_single[m], p1[m])


def test_two_process_torchrun_matches_single_process(tmp_path, synthetic_small):
    """`torchrun --nproc_per_node=2 -m mmn_core train --distributed` (gloo, 127.0.0.1): rank 0 writes one
    checkpoint; every rank ended on bit-identical weights; test AUROC within 0.01 of one process."""
    out = tmp_path / "ddp"
    port = _free_port()
    env = {**os.environ, "MMN_THREADS": "1", "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--max-restarts=0",
           "-m", "mmn_core", "train", "--dataset", "synthetic", "--epochs", "8", "--seed", "0",
           "--out", str(out), "--distributed", "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1                                               # rank 0 alone prints (and saves)
    payload = json.loads(lines[0])
    assert payload["distributed"]["world_size"] == 2 and payload["distributed"]["backend"] == "gloo"
    assert payload["distributed"]["weights_identical_across_ranks"] is True
    assert payload["distributed"]["gradient_bytes_per_step"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]          # no stray temp folders
    trained = load(out)
    assert trained.info["distributed"]["world_size"] == 2
    ddp_auroc = trained.metrics["tasks"]["outcome"]["auroc"][-1]
    single = train_model(load_dataset("synthetic"), config=replace(TrainConfig(), epochs=8, seed=0))
    single_auroc = single.metrics["tasks"]["outcome"]["auroc"][-1]
    assert abs(ddp_auroc - single_auroc) <= 0.01, (ddp_auroc, single_auroc)
    assert payload["tasks"]["outcome"]["auroc"][-1] == pytest.approx(ddp_auroc)


def test_distributed_flag_without_torchrun_is_one_line(capsys, tmp_path, monkeypatch):
    from mmn_core.cli import main
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    for argv in (["train", "--dataset", "synthetic", "--out", str(tmp_path / "c"), "--distributed"],
                 ["compare", "--dataset", "synthetic", "--folds", "2", "--distributed"],
                 ["compare", "--dataset", "synthetic", "--folds", "2", "--distributed", "--workers", "2"]):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and ("torchrun" in err), (argv, err)
        assert argv[0] in err or "--workers" in err


def test_two_process_torchrun_compare(synthetic_small):
    """`torchrun --nproc_per_node=2 -m mmn_core compare --distributed`: rank 0 alone prints; every fold trained
    data-parallel gives AUROCs within 0.02 of the single-process comparison (fold means)."""
    port = _free_port()
    env = {**os.environ, "MMN_THREADS": "1", "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = ["compare", "--dataset", "synthetic", "--folds", "2", "--epochs", "4", "--seed", "0", "--json"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--max-restarts=0",
           "-m", "mmn_core", *args, "--distributed"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    ddp = json.loads(lines[0])
    assert ddp["distributed"] == {"world_size": 2, "backend": "gloo"} and ddp["folds"] == 2
    single = subprocess.run([sys.executable, "-m", "mmn_core", *args, "--workers", "1"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=420)
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads(single.stdout)
    for kind in ("multimodn", "pfusion"):
        a, b = ddp["tasks"]["outcome"][kind]["auroc"], one["tasks"]["outcome"][kind]["auroc"]
        assert 0.6 < b and abs(a - b) <= 0.02, (kind, a, b)
