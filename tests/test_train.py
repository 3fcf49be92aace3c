"""The loss (masking, task weights, state-change term, distinct states) and `fit` (learns, early-stops, cancels
keeping the best weights, deterministic for a seed)."""
import math

import pytest
import torch
from torch.nn import functional as F

from mmn_core import ModelConfig, Preprocessor, TrainConfig, fit, load_dataset, predict, train_model
from mmn_core.checkpoint import build_model
from mmn_core.data import split
from mmn_core.metrics import final_metrics
from mmn_core.model import ModelOutput, MultiModN, ModalityDef, TaskDef
from mmn_core.train import evaluate_loss

TASKS = [TaskDef("b", "binary", 1), TaskDef("m", "multiclass", 3), TaskDef("r", "regression", 1)]


def _toy(weights=(1.0, 1.0, 1.0), **cfg):
    """Two tabular modalities, three tasks, and a batch of 6 records with every presence pattern."""
    torch.manual_seed(0)
    tasks = [TaskDef(t.name, t.type, t.n_outputs, w) for t, w in zip(TASKS, weights)]
    model = MultiModN([ModalityDef("a", "tabular", 3), ModalityDef("c", "tabular", 2)], tasks,
                      ModelConfig(state_size=4, hidden=8, dropout=0.0, **cfg)).eval()
    with torch.no_grad():
        model.init_state.normal_()
    gen = torch.Generator().manual_seed(1)
    x = {"a": torch.randn(6, 3, generator=gen), "c": torch.randn(6, 2, generator=gen)}
    present = {"a": torch.tensor([1, 1, 0, 0, 1, 0], dtype=torch.bool),
               "c": torch.tensor([1, 0, 1, 0, 1, 1], dtype=torch.bool)}
    y = {"b": torch.tensor([1.0, 0.0, float("nan"), 1.0, 0.0, 1.0]),
         "m": torch.tensor([2, -1, 0, 1, -1, 2]),
         "r": torch.tensor([0.5, -1.0, 0.2, float("nan"), 1.5, 0.0])}
    return model, x, present, y


def _hand_loss(out: ModelOutput, y, present, tasks, order=("a", "c")):
    """Loop-by-loop reference: every distinct state (prior + each present step) × every labelled task."""
    total, weight = 0.0, 0.0
    n = out.states.shape[1]
    for i in range(n):
        steps = [0] + [k + 1 for k, m in enumerate(order) if present[m][i]]
        for t in tasks:
            target = y[t.name][i]
            if (t.type == "multiclass" and target < 0) or (t.type != "multiclass" and math.isnan(target)):
                continue
            for k in steps:
                lg = out.logits[t.name][k, i]
                if t.type == "binary":
                    el = F.binary_cross_entropy_with_logits(lg[0], target)
                elif t.type == "multiclass":
                    el = F.cross_entropy(lg[None], target[None])
                else:
                    el = (lg[0] - target) ** 2
                total += t.weight * float(el)
                weight += t.weight
    return total / weight


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (3.0, 0.5, 2.0)])
def test_loss_equals_hand_computation_over_distinct_states(weights):
    model, x, present, y = _toy(weights)
    with torch.no_grad():
        out = model(x, present)
    assert math.isclose(float(model.loss(out, y)), _hand_loss(out, y, present, model.tasks), rel_tol=1e-5)


def test_loss_counts_each_distinct_state_once():
    """A record with nothing present has one distinct state (the prior), not K+1 copies of it."""
    model, x, present, y = _toy()
    with torch.no_grad():
        out = model(x, present)
    rows = [0, 3]                       # record 0: both present (3 states); record 3: none (1 state)
    sub = ModelOutput(out.steps, out.states[:, rows], {t: v[:, rows] for t, v in out.logits.items()},
                      out.ran[:, rows])
    ys = {"b": y["b"][rows], "m": torch.tensor([-1, -1]), "r": torch.tensor([float("nan")] * 2)}
    el = F.binary_cross_entropy_with_logits(sub.logits["b"][..., 0], ys["b"].expand(3, -1), reduction="none")
    expected = (el[:, 0].sum() + el[0, 1]) / 4          # 3 states of record 0 + 1 state of record 3
    copies = (el[:, 0].sum() + 3 * el[0, 1]) / 6         # what counting skipped steps would give
    assert not math.isclose(float(expected), float(copies), rel_tol=1e-4)
    assert math.isclose(float(model.loss(sub, ys)), float(expected), rel_tol=1e-6)


def test_masked_labels_never_contribute():
    model, x, present, y = _toy()
    out = model(x, present)
    for lg in out.logits.values():
        lg.retain_grad()
    base = model.loss(out, y)
    base.backward()
    # the gradient reaching the logits of an unlabelled (record, task) is exactly zero ...
    assert torch.equal(out.logits["b"].grad[:, 2], torch.zeros(3, 1))
    assert torch.equal(out.logits["m"].grad[:, 1], torch.zeros(3, 3))
    assert torch.equal(out.logits["m"].grad[:, 4], torch.zeros(3, 3))
    assert torch.equal(out.logits["r"].grad[:, 3], torch.zeros(3, 1))
    assert out.logits["b"].grad[:, 0].abs().sum() > 0
    # ... any other 'missing' code gives the same loss ...
    with torch.no_grad():
        y2 = {**y, "m": torch.tensor([2, -7, 0, 1, -100, 2])}
        assert torch.equal(model.loss(out, y2), base)
        # ... and so do arbitrary predictions for unlabelled records
        logits = {t: v.clone() for t, v in out.logits.items()}
        logits["b"][:, 2] = 1e4
        logits["m"][:, 1] = -1e4
        logits["r"][:, 3] = 1e4
        assert torch.equal(model.loss(ModelOutput(out.steps, out.states, logits, out.ran), y), base)
        # while changing a labelled record's label does change it
        y3 = {**y, "b": torch.tensor([0.0, 0.0, float("nan"), 1.0, 0.0, 1.0])}
        assert not torch.equal(model.loss(out, y3), base)


def test_task_weights_scale_their_task():
    """Loss with weights w equals Σ_t w_t·sum_t / Σ_t w_t·count_t; with one task weighted up, the loss moves
    towards that task's own mean loss."""
    model1, x, present, y = _toy((1.0, 1.0, 1.0))
    model2, _, _, _ = _toy((100.0, 1.0, 1.0))
    with torch.no_grad():
        out = model1(x, present)
        only_b = _hand_loss(out, y, present, [model1.tasks[0]])
        l1, l2 = float(model1.loss(out, y)), float(model2.loss(out, y))
    assert abs(l2 - only_b) < abs(l1 - only_b)
    assert math.isclose(l2, _hand_loss(out, y, present, model2.tasks), rel_tol=1e-5)


def test_state_change_term_equals_hand_computation():
    model, x, present, y = _toy(err_weight=0.7, state_change_weight=0.3)
    with torch.no_grad():
        out = model(x, present)
        changes = []
        for i in range(6):
            for k, m in enumerate(["a", "c"]):
                if present[m][i]:
                    changes.append(float(((out.states[k + 1, i] - out.states[k, i]) ** 2).sum()))
        expected = 0.7 * _hand_loss(out, y, present, model.tasks) + 0.3 * sum(changes) / len(changes)
        assert len(changes) == int(sum(p.sum() for p in present.values()))
        assert math.isclose(float(model.loss(out, y)), expected, rel_tol=1e-5)


def test_pfusion_loss_is_one_state_per_record(synthetic_small):
    ds = synthetic_small.subset(range(200))
    prep = Preprocessor.fit(ds)
    data = prep.transform(ds)
    torch.manual_seed(0)
    model = build_model("pfusion", ds.spec, prep, ModelConfig(err_weight=2.0)).eval()
    with torch.no_grad():
        out = model(data.x, data.present, data.lengths)
        assert all(v.shape[0] == 1 for v in out.logits.values())
        b = F.binary_cross_entropy_with_logits(out.logits["outcome"][0, :, 0], data.y["outcome"], reduction="sum")
        r = F.mse_loss(out.logits["score"][0, :, 0], data.y["score"], reduction="sum")
        m = F.cross_entropy(out.logits["stage"][0], data.y["stage"], reduction="sum")
        expected = 2.0 * float(b + r + m) / (3 * len(data))
        assert math.isclose(float(model.loss(out, data.y)), expected, rel_tol=1e-5)


# --- fit ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,threshold", [("multimodn", 0.72), ("pfusion", 0.70)])
def test_fit_beats_stated_auroc_on_synthetic_outcome(synthetic_small, kind, threshold):
    """Measured on this 1,200-record cohort with seed 0: test AUROC 0.747 (MultiModN) and 0.771 (P-Fusion) after
    8 epochs; 0.73-0.80 over other seeds; the constant prior scores 0.5. The thresholds sit below."""
    trained = train_model(synthetic_small, kind, ModelConfig(), TrainConfig(epochs=8, seed=0))
    final = final_metrics(trained.metrics)
    assert final["outcome"]["auroc"] >= threshold, final["outcome"]
    assert final["stage"]["auroc"] >= 0.80 and final["score"]["r2"] >= 0.5, final
    losses = [h["train_loss"] for h in trained.history]
    assert losses[-1] < losses[0]
    if kind == "multimodn":
        auroc = trained.metrics["tasks"]["outcome"]["auroc"]
        assert len(auroc) == len(synthetic_small.spec.modalities) + 1
        assert auroc[-1] > auroc[0] + 0.1       # the modalities add information beyond the prior


def _tensors(ds, seed=0):
    tr, va, te = split(ds, seed=seed)
    prep = Preprocessor.fit(ds.subset(tr))
    data = prep.transform(ds)
    return prep, data.subset(tr), data.subset(va)


def _fresh(ds, prep, kind="multimodn", seed=0):
    torch.manual_seed(seed)
    return build_model(kind, ds.spec, prep, ModelConfig(state_size=8, hidden=16))


def test_early_stopping_stops_patience_epochs_after_the_best(synthetic_small):
    ds = synthetic_small.subset(range(300))
    prep, train, val = _tensors(ds)
    model = _fresh(ds, prep)
    cfg = TrainConfig(epochs=200, batch_size=32, lr=2e-2, patience=3, seed=0)   # overfits fast
    history = fit(model, train, val, cfg)
    assert len(history) < 200
    val_losses = [h["val_loss"] for h in history]
    best, best_epoch = math.inf, 0
    for i, v in enumerate(val_losses):           # the documented rule: improve by more than 1e-5
        if v < best - 1e-5:
            best, best_epoch = v, i
    assert len(history) == best_epoch + 1 + cfg.patience
    # the model keeps the best epoch's weights, not the last ones
    assert math.isclose(evaluate_loss(model, val), val_losses[best_epoch], rel_tol=1e-6)
    assert val_losses[-1] > val_losses[best_epoch]


def test_cancel_keeps_the_best_weights(synthetic_small):
    ds = synthetic_small.subset(range(400))
    prep, train, val = _tensors(ds)
    model = _fresh(ds, prep)
    snapshots = []
    calls = {"n": 0}

    def progress(row):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 50                   # 10 batches per epoch: cancel inside epoch 6

    cfg = TrainConfig(epochs=100, batch_size=32, lr=3e-2, patience=1000, seed=0)
    history = fit(model, train, val, cfg, progress=progress, should_stop=should_stop)
    assert len(history) == 6 and calls["n"] == 51
    val_losses = [h["val_loss"] for h in history]
    best = min(range(len(val_losses)), key=val_losses.__getitem__)
    assert best < len(history) - 1, "the test needs the last epoch not to be the best one"
    state = model.state_dict()
    assert all(torch.equal(state[k], snapshots[best][k]) for k in state)
    assert not model.training


def test_training_is_deterministic_for_a_seed(synthetic_small):
    ds = synthetic_small.subset(range(300))
    prep, train, val = _tensors(ds)
    runs = []
    for seed in (5, 5, 6):
        model = _fresh(ds, prep, seed=seed)
        hist = fit(model, train, val, TrainConfig(epochs=2, batch_size=64, seed=seed))
        runs.append((model.state_dict(), [(h["train_loss"], h["val_loss"]) for h in hist]))
    (s1, h1), (s2, h2), (s3, h3) = runs
    assert h1 == h2 and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert h1 != h3


def test_paper_semantics_skips_for_the_whole_batch(synthetic_small):
    """The official code's mode (for the MNAR comparison) is batch-wide: a modality counts as present for a
    batch only if every record has it — unlike the default per-record skipping."""
    ds = synthetic_small.subset(range(64))
    prep, train, _ = _tensors(ds)
    model = _fresh(ds, prep).eval()
    per_record = predict(model, train, batch_size=8)
    paper = predict(model, train, batch_size=8, semantics="paper")   # paper semantics always use batch 16
    for k, name in enumerate(ds.spec.modality_names):
        p = train.present[name][: len(train) // 16 * 16].view(-1, 16)
        expect = p.all(dim=1, keepdim=True).expand_as(p).reshape(-1)
        assert torch.equal(paper.ran[k][: len(expect)], expect)
        assert torch.equal(per_record.ran[k], train.present[name])


def test_one_mitigation_vocabulary_for_cli_mnar_lab_and_model_page():
    """The names mean the same TrainConfig everywhere (the Model page once meant 'all data' by 'balance')."""
    from mmn_core.experiments import MITIGATIONS as MNAR_MITIGATIONS, _mnar_train_config
    from mmn_core.train import MITIGATIONS, mitigation_options
    ds = load_dataset("synthetic", n=50)
    names = ds.spec.modality_names
    assert tuple(MITIGATIONS) == MNAR_MITIGATIONS
    for mit in MITIGATIONS:
        cfg = _mnar_train_config(ds, names[1], "outcome", mit, "per-record", 3, 0, 0.3, None)
        targets = names if mit == "presence-balance-all" else [names[1]]
        assert cfg == TrainConfig(epochs=3, seed=0, **mitigation_options(mit, targets, "outcome"))
    assert mitigation_options("presence-balance-all", names, "outcome") == {
        "balance_modalities": tuple(names), "balance_task": "outcome"}
    assert mitigation_options("modality-dropout", names, None) == {"modality_dropout": 0.3}
    assert mitigation_options("none", names, None) == {}
    with pytest.raises(ValueError, match="needs a classification task"):
        mitigation_options("presence-balance", names, None)
    with pytest.raises(ValueError, match="unknown mitigation"):
        mitigation_options("balance", names, "outcome")


@pytest.mark.parametrize("options", [{}, {"modality_dropout": 0.3, "shuffle_order": True},
                                     {"balance_modalities": ("labs",), "balance_task": "outcome"}])
def test_fit_is_epoch_presence_then_train_epoch(synthetic_small, options):
    """`train_epoch` is fit's epoch (the streaming trainer calls it per chunk): the same seed, the same
    generator draws in the same order, bit-identical weights."""
    from mmn_core.train import epoch_presence, optimizer, train_epoch
    ds = synthetic_small.subset(range(300))
    prep, train, _ = _tensors(ds)
    cfg = TrainConfig(epochs=2, batch_size=64, seed=5, patience=100, **options)
    model = _fresh(ds, prep)
    history = fit(model, train, None, cfg)
    manual = _fresh(ds, prep)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = optimizer(manual, cfg)
    losses, weights = [], []
    for _ in range(cfg.epochs):
        total, count, cancelled = train_epoch(manual, train, epoch_presence(train, cfg, gen), opt, cfg, gen)
        assert count == len(train) and not cancelled
        losses.append(total / count)
        weights.append({k: v.clone() for k, v in manual.state_dict().items()})
    assert [h["train_loss"] for h in history] == pytest.approx(losses, rel=1e-12)
    best = weights[min(range(len(losses)), key=losses.__getitem__)]   # fit keeps the best epoch (no validation)
    for k, a in model.state_dict().items():
        assert torch.equal(a, best[k]), k


def test_train_epoch_cancel_returns_what_it_did(synthetic_small):
    from mmn_core.train import epoch_presence, optimizer, train_epoch
    ds = synthetic_small.subset(range(300))
    prep, train, _ = _tensors(ds)
    cfg = TrainConfig(batch_size=50, seed=0)
    model = _fresh(ds, prep)
    gen = torch.Generator().manual_seed(0)
    calls = iter([False, False, True])
    total, count, cancelled = train_epoch(model, train, epoch_presence(train, cfg, gen), optimizer(model, cfg),
                                          cfg, gen, lambda: next(calls))
    assert cancelled and count == 100 and total > 0
