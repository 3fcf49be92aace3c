"""Model invariants: per-record skipping, batched == one record at a time, gradient isolation, NaN safety,
and one contract test for every encoder class."""
import pytest
import torch

from mmn_core import ModelConfig, Preprocessor, load_dataset
from mmn_core.checkpoint import build_model
from mmn_core.model import ENCODERS, MultiModN

KINDS = ["multimodn", "pfusion"]


@pytest.fixture(scope="module")
def setup():
    """A small synthetic cohort (5 tabular modalities + a GRU `visits` sequence of 0-8 steps) as tensors, with
    presence re-drawn at random so every missingness pattern occurs, and absent rows filled with NaN."""
    ds = load_dataset("synthetic", n=96, seed=3)
    prep = Preprocessor.fit(ds)
    data = prep.transform(ds)
    gen = torch.Generator().manual_seed(0)
    present = {m: torch.rand(len(data), generator=gen) < 0.6 for m in data.present}
    for m in present:                                     # rows 4-7 have nothing, rows 8-11 everything
        present[m][4:8] = False
        present[m][8:12] = True
    present["visits"] &= data.lengths["visits"] > 0       # a sequence with no rows cannot be present
    x = {m: torch.where(present[m].view(-1, *[1] * (v.dim() - 1)), v, torch.tensor(float("nan")))
         for m, v in data.x.items()}
    return ds, prep, data, x, present


def _model(kind, ds, prep, seed=0, **cfg):
    torch.manual_seed(seed)
    model = build_model(kind, ds.spec, prep, ModelConfig(**cfg))
    # non-zero initial state so that "state unchanged" is not trivially zeros
    if kind == "multimodn":
        with torch.no_grad():
            model.init_state.normal_()
    return model.eval()


def _one(d, i):
    return {k: v[i:i + 1] for k, v in d.items()}


def test_lengths_vary_in_fixture(setup):
    _, _, data, _, present = setup
    lens = data.lengths["visits"][present["visits"]]
    assert len(set(lens.tolist())) >= 5, "the GRU must see records of many different lengths"
    assert (~present["visits"]).any() and present["visits"].any()


def test_skipped_record_state_is_bit_identical(setup):
    ds, prep, data, x, present = setup
    model = _model("multimodn", ds, prep)
    with torch.no_grad():
        out = model(x, present, data.lengths)
    assert out.steps == ["prior", *ds.spec.modality_names]
    assert out.states.shape == (len(ds.spec.modalities) + 1, len(data), model.config.state_size)
    for k, name in enumerate(ds.spec.modality_names, start=1):
        skip = ~present[name]
        assert torch.equal(out.ran[k - 1], present[name])
        assert skip.any()
        assert torch.equal(out.states[k][skip], out.states[k - 1][skip]), name
        # and a present record's state really moved (otherwise the test above proves nothing)
        moved = (out.states[k][~skip] != out.states[k - 1][~skip]).any(dim=1)
        assert moved.all(), name
    # a record with nothing present keeps the prior bit for bit at every step, and so do its predictions
    for k in range(out.states.shape[0]):
        assert torch.equal(out.states[k][4:8], model.init_state.detach().expand(4, -1))
        for t in out.logits:
            assert torch.equal(out.logits[t][k][4:8], out.logits[t][0][4:8])


def test_explicit_order_is_followed(setup):
    ds, prep, data, x, present = setup
    model = _model("multimodn", ds, prep)
    order = list(reversed(ds.spec.modality_names))
    with torch.no_grad():
        out = model(x, present, data.lengths, order)
        first = model.encoders[order[0]](model.init_state.expand(len(data), -1),
                                         torch.nan_to_num(x[order[0]]), data.lengths.get(order[0]))
    assert out.steps == ["prior", *order]
    p = present[order[0]]
    assert torch.allclose(out.states[1][p], first[p], atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_equals_each_record_alone(setup, kind):
    ds, prep, data, x, present = setup
    model = _model(kind, ds, prep)
    with torch.no_grad():
        batch = model(x, present, data.lengths)
        for i in range(len(data)):
            one = model(_one(x, i), _one(present, i), _one(data.lengths, i))
            for t in batch.logits:
                assert torch.allclose(one.logits[t][:, 0], batch.logits[t][:, i], atol=1e-6, rtol=0), (kind, i, t)
            if batch.states is not None:
                assert torch.allclose(one.states[:, 0], batch.states[:, i], atol=1e-6, rtol=0), (kind, i)
            assert torch.equal(one.ran[:, 0], batch.ran[:, i])


@pytest.mark.parametrize("kind", KINDS)
def test_nan_in_absent_modality_never_reaches_outputs_or_gradients(setup, kind):
    ds, prep, data, x, present = setup
    assert any(torch.isnan(v).any() for v in x.values())
    model = _model(kind, ds, prep).train()          # train mode: dropout active as in fit
    torch.manual_seed(1)
    out = model(x, present, data.lengths)
    for t, lg in out.logits.items():
        assert torch.isfinite(lg).all(), t
    if out.states is not None:
        assert torch.isfinite(out.states).all()
    loss = model.loss(out, data.y) + sum(lg.sum() for lg in out.logits.values())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # and the NaN inputs give exactly the outputs of zero-filled inputs (absence is not encoded as a value)
    model.eval()
    with torch.no_grad():
        a = model(x, present, data.lengths)
        b = model({k: torch.nan_to_num(v, nan=0.0) for k, v in x.items()}, present, data.lengths)
    for t in a.logits:
        assert torch.equal(a.logits[t], b.logits[t])


@pytest.mark.parametrize("name", ["demographics", "labs", "imaging", "visits"])
def test_no_gradient_from_records_lacking_the_modality(setup, name):
    ds, prep, data, x, present = setup
    model = _model("multimodn", ds, prep).train()
    lacking, has = ~present[name], present[name]
    assert lacking.sum() >= 10 and has.sum() >= 10

    def encoder_grads(rows):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(2)
        out = model(x, present, data.lengths)
        # every step and every task of the selected records only
        sum(lg[:, rows].pow(2).sum() for lg in out.logits.values()).backward()
        return [p.grad for p in model.encoders[name].parameters()]

    for g in encoder_grads(lacking):
        assert g is None or torch.equal(g, torch.zeros_like(g))
    grads = encoder_grads(has)
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)

    # the same through the training loss: labels of records that have the modality are masked out
    y = {}
    for t, v in data.y.items():
        y[t] = torch.where(has, torch.full_like(v, -1 if t == "stage" else float("nan")), v)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    model.loss(model(x, present, data.lengths), y).backward()
    for p in model.encoders[name].parameters():
        assert p.grad is None or torch.equal(p.grad, torch.zeros_like(p.grad))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoders.parameters())


# --- one contract for every encoder class ----------------------------------------------------------------
def _encoder_inputs(kind: str, n: int, features: int, gen: torch.Generator):
    if kind == "tabular":
        return torch.randn(n, features, generator=gen), None
    T = 6
    lengths = torch.tensor([1 + i % T for i in range(n)])
    x = torch.randn(n, T, features, generator=gen)
    x[torch.arange(T)[None, :] >= lengths[:, None]] = 0.0     # padding, as TensorData stores it
    return x, lengths


@pytest.mark.parametrize("kind,cls", sorted(ENCODERS.items()), ids=sorted(ENCODERS))
def test_encoder_contract(kind, cls):
    S, F, N = 8, 3, 12
    torch.manual_seed(0)
    enc = cls(S, F, 16, 0.5)
    gen = torch.Generator().manual_seed(0)
    x, lengths = _encoder_inputs(kind, N, F, gen)
    state = torch.randn(N, S, generator=gen)
    enc.eval()
    with torch.no_grad():
        out = enc(state, x, lengths)
        assert out.shape == (N, S) and out.dtype == torch.float32
        # deterministic in eval mode (dropout off)
        assert torch.equal(out, enc(state, x, lengths))
        # per-record independence: each record alone gives its row of the batch
        for i in range(N):
            one = enc(state[i:i + 1], x[i:i + 1], None if lengths is None else lengths[i:i + 1])
            assert torch.allclose(one[0], out[i], atol=1e-6, rtol=0), i
        # changing one record's input changes only its own row
        x2 = x.clone()
        x2[0] = x2[0] + 1.0
        out2 = enc(state, x2, lengths)
        assert not torch.allclose(out2[0], out[0]) and torch.equal(out2[1:], out[1:])
        # the incoming state seeds the encoder (the GRU's initial hidden state, the MLP's input), not only a
        # residual: the *update* out − state changes with the state, row by row
        state2 = state.clone()
        state2[1] = state2[1] + 1.0
        out3 = enc(state2, x, lengths)
        assert not torch.allclose(out3[1] - state2[1], out[1] - state[1], atol=1e-4)
        assert torch.equal(out3[0], out[0]) and torch.equal(out3[2:], out[2:])
    # every parameter is trainable through the output
    enc.train()
    enc(state, x, lengths).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_gru_encoder_reads_only_each_records_own_steps():
    """Padding beyond a record's length (whatever its value) never changes that record's output."""
    cls = ENCODERS["sequence"]
    torch.manual_seed(0)
    enc = cls(8, 3, 16, 0.0).eval()
    gen = torch.Generator().manual_seed(1)
    x, lengths = _encoder_inputs("sequence", 12, 3, gen)
    state = torch.randn(12, 8, generator=gen)
    noisy = x.clone()
    noisy[torch.arange(x.shape[1])[None, :] >= lengths[:, None]] = 1e3
    with torch.no_grad():
        assert torch.allclose(enc(state, x, lengths), enc(state, noisy, lengths), atol=1e-6, rtol=0)


def test_every_modality_kind_has_an_encoder():
    assert set(ENCODERS) == {"tabular", "sequence"}
    assert MultiModN.kind == "multimodn"
