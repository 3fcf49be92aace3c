"""The batch driver (mmn_core/run.py): batched == unbatched, paper semantics batch-wide, presence overrides
hide but never invent, the caller's train/eval mode is restored."""
import pytest
import torch

from mmn_core import ModelConfig, Preprocessor, run
from mmn_core.checkpoint import build_model


@pytest.fixture(scope="module")
def setup(synthetic_small):
    ds = synthetic_small.subset(list(range(300)))
    prep = Preprocessor.fit(ds)
    torch.manual_seed(0)
    model = build_model("multimodn", ds.spec, prep, ModelConfig(state_size=8, hidden=16, dropout=0.3))
    return model, prep.transform(ds)


def _one_pass(model, data, present=None, order=None):
    """Reference: every record in one forward call, no batching."""
    with torch.no_grad():
        return model(data.x, present or data.present, data.lengths, order)


@pytest.mark.parametrize("batch_size", [1, 7, 64, 299, 300, 5000])
def test_batched_equals_one_pass(setup, batch_size):
    model, data = setup
    model.eval()
    ref = _one_pass(model, data)
    out = run.forward(model, data, batch_size)
    assert out.steps == ref.steps
    assert torch.equal(out.ran, ref.ran)
    torch.testing.assert_close(out.states, ref.states, rtol=1e-5, atol=1e-6)
    for t in ref.logits:
        assert out.logits[t].shape == ref.logits[t].shape
        torch.testing.assert_close(out.logits[t], ref.logits[t], rtol=1e-5, atol=1e-6)


def test_order_and_keep_states(setup):
    model, data = setup
    model.eval()
    order = list(reversed(model.modality_names))
    ref = _one_pass(model, data, order=order)
    out = run.forward(model, data, 50, order=order, keep_states=False)
    assert out.states is None and out.steps == ["prior", *order]
    for t in ref.logits:
        torch.testing.assert_close(out.logits[t], ref.logits[t], rtol=1e-5, atol=1e-6)


def test_paper_semantics_skip_for_the_whole_batch(setup):
    """With paper semantics an encoder runs for a batch of PAPER_BATCH records only if all of them have it."""
    model, data = setup
    out = run.forward(model, data, batch_size=1000, semantics="paper")
    n = len(data)
    for k, m in enumerate(model.modality_names):
        has = data.present[m]
        for s in range(0, n, run.PAPER_BATCH):
            ran = out.ran[k, s:s + run.PAPER_BATCH]
            assert bool(ran.all()) == bool(has[s:s + run.PAPER_BATCH].all()) and bool(ran.all()) == bool(ran.any())
    # and it differs from per-record skipping where a batch mixes presence
    mixed = [m for m in model.modality_names if 0 < int(data.present[m].sum()) < n]
    assert mixed
    per_record = run.forward(model, data, 1000)
    assert not torch.equal(per_record.ran, out.ran)


def test_presence_override_hides_but_never_invents(setup):
    model, data = setup
    m = next(m for m in model.modality_names if 0 < int(data.present[m].sum()) < len(data))
    everything = {k: torch.ones(len(data), dtype=torch.bool) for k in data.present}
    out = run.forward(model, data, 64, present=everything)
    ref = _one_pass(model.eval(), data)
    assert torch.equal(out.ran, ref.ran)                     # all-True override = the data's own presence
    hide = torch.zeros(len(data), dtype=torch.bool)
    hide[::2] = True
    out = run.forward(model, data, 64, present={m: hide})
    k = model.modality_names.index(m)
    assert torch.equal(out.ran[k], data.present[m] & hide)
    assert not out.ran[k][1::2].any()
    assert not run.forward(model, data, 64, present={m: False}).ran[k].any()
    with pytest.raises(ValueError, match="unknown modality"):
        run.forward(model, data, 64, present={"nope": True})
    with pytest.raises(ValueError, match="expected"):
        run.forward(model, data, 64, present={m: torch.ones(3, dtype=torch.bool)})


@pytest.mark.parametrize("training", [True, False])
def test_mode_restored_and_dropout_off(setup, training):
    model, data = setup
    model.train(training)
    a = run.forward(model, data, 32)
    assert model.training is training
    assert all(sub.training is training for sub in model.modules())
    b = run.forward(model, data, 128)
    for t in a.logits:                      # dropout (0.3) was off: two runs agree
        torch.testing.assert_close(a.logits[t], b.logits[t], rtol=1e-5, atol=1e-6)
    assert not a.logits[next(iter(a.logits))].requires_grad


def test_batches_and_rows():
    got = list(run.batches(10, 4))
    assert [g.tolist() for g in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    gen = torch.Generator().manual_seed(0)
    shuffled = torch.cat(list(run.batches(10, 3, shuffle=True, gen=gen)))
    assert sorted(shuffled.tolist()) == list(range(10)) and shuffled.tolist() != list(range(10))
    d = {"a": torch.arange(10), "b": torch.arange(10) * 2}
    assert run.rows(d, torch.tensor([3, 1]))["b"].tolist() == [6, 2]
    with pytest.raises(ValueError):
        run.forward(None, _Empty(), 10)


class _Empty:
    present = {}

    def __len__(self):
        return 0
