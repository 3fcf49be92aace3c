"""Metrics equal scikit-learn's on fixed arrays; the per-step × per-task matrix has the right shape and values."""
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from mmn_core.metrics import (classification_metrics, final_metrics, metric_matrix, regression_metrics,
                              task_metrics)
from mmn_core.model import ModelOutput, TaskDef

Y_BIN = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1])
P_BIN = np.array([0.1, 0.8, 0.45, 0.3, 0.9, 0.6, 0.2, 0.55, 0.35, 0.05, 0.7, 0.5])
Y_MC = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0, 2])
P_MC = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1],
                 [0.4, 0.4, 0.2], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1], [0.3, 0.5, 0.2], [0.25, 0.25, 0.5]])
Y_REG = np.array([3.0, -1.5, 2.2, 7.0, 0.0, 4.4, 5.1])
P_REG = np.array([2.5, -1.0, 2.0, 6.0, 0.7, 4.0, 6.3])


def test_binary_classification_equals_sklearn():
    got = classification_metrics(Y_BIN, P_BIN)
    pred = (P_BIN >= 0.5).astype(int)
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(Y_BIN, P_BIN), abs=1e-12)
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y_BIN, pred), abs=1e-12)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(Y_BIN, pred), abs=1e-12)
    # hand-checked anchors, so a shared mistake with sklearn's call cannot hide
    assert got["accuracy"] == pytest.approx(9 / 12)
    assert 0.5 < got["auroc"] < 1.0


def test_multiclass_classification_equals_sklearn_macro_ovr():
    got = classification_metrics(Y_MC, P_MC)
    pred = P_MC.argmax(1)
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(Y_MC, P_MC, multi_class="ovr", average="macro"),
                                         abs=1e-12)
    per_class = np.mean([skm.roc_auc_score(Y_MC == c, P_MC[:, c]) for c in range(3)])
    assert got["auroc"] == pytest.approx(per_class, abs=1e-12)
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y_MC, pred), abs=1e-12)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(Y_MC, pred), abs=1e-12)


# scikit-learn warns when a prediction names a class absent from y; that is the situation under test
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_multiclass_with_a_class_absent_averages_over_present_classes():
    keep = Y_MC != 1
    got = classification_metrics(Y_MC[keep], P_MC[keep])
    expected = np.mean([skm.roc_auc_score(Y_MC[keep] == c, P_MC[keep][:, c]) for c in (0, 2)])
    assert got["auroc"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_single_class_gives_nan_auroc():
    assert math.isnan(classification_metrics(np.ones(5, int), np.linspace(0, 1, 5))["auroc"])
    assert math.isnan(classification_metrics(np.zeros(3, int), P_MC[:3])["auroc"])


def test_regression_equals_sklearn():
    got = regression_metrics(Y_REG, P_REG)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(Y_REG, P_REG), abs=1e-12)
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(Y_REG, P_REG)), abs=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(Y_REG, P_REG), abs=1e-12)
    assert got["mae"] == pytest.approx(np.mean(np.abs(Y_REG - P_REG)))


def test_task_metrics_drop_unlabelled_records():
    y = np.array([1.0, np.nan, 0.0, 1.0, np.nan, 0.0])
    logits = np.array([[2.0], [-5.0], [-1.0], [0.5], [9.0], [0.2]])
    got = task_metrics("binary", y, logits)
    keep = ~np.isnan(y)
    prob = 1 / (1 + np.exp(-logits[keep, 0]))
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(y[keep], prob))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y[keep], prob >= 0.5))
    assert all(math.isnan(v) for v in task_metrics("binary", np.full(3, np.nan), np.zeros((3, 1))).values())
    ymc = np.array([0, -1, 2, 1, 2])
    lmc = np.log(P_MC[:5])
    got = task_metrics("multiclass", ymc, lmc)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(ymc[ymc >= 0], P_MC[:5][ymc >= 0].argmax(1)))


def test_metric_matrix_shape_and_values_per_step():
    gen = torch.Generator().manual_seed(0)
    K, N = 3, 40
    tasks = [TaskDef("b", "binary", 1), TaskDef("m", "multiclass", 3), TaskDef("r", "regression", 1)]
    logits = {"b": torch.randn(K + 1, N, 1, generator=gen), "m": torch.randn(K + 1, N, 3, generator=gen),
              "r": torch.randn(K + 1, N, 1, generator=gen)}
    y = {"b": (torch.rand(N, generator=gen) > 0.5).float(), "m": torch.randint(0, 3, (N,), generator=gen),
         "r": torch.randn(N, generator=gen)}
    y["b"][:5] = float("nan")
    y["m"][5:8] = -1
    y["r"][8:10] = float("nan")
    out = ModelOutput(["prior", "a", "b", "c"], None, logits, torch.ones(K, N, dtype=torch.bool))
    stats = {"r": [10.0, 2.0]}
    matrix = metric_matrix(out, y, tasks, stats)
    assert matrix["steps"] == ["prior", "a", "b", "c"]
    assert set(matrix["tasks"]) == {"b", "m", "r"}
    assert set(matrix["tasks"]["b"]) == {"auroc", "balanced_accuracy", "accuracy"}
    assert set(matrix["tasks"]["r"]) == {"mae", "rmse", "r2"}
    for task in matrix["tasks"].values():
        assert all(len(v) == K + 1 for v in task.values())
    for k in range(K + 1):
        keep = ~torch.isnan(y["b"])
        prob = torch.sigmoid(logits["b"][k, keep, 0]).numpy()
        assert matrix["tasks"]["b"]["auroc"][k] == pytest.approx(skm.roc_auc_score(y["b"][keep].numpy(), prob))
        keep = y["m"] >= 0
        prob = torch.softmax(logits["m"][k, keep], -1).numpy()
        assert matrix["tasks"]["m"]["auroc"][k] == pytest.approx(
            skm.roc_auc_score(y["m"][keep].numpy(), prob, multi_class="ovr", average="macro"))
        assert matrix["tasks"]["m"]["accuracy"][k] == pytest.approx(
            skm.accuracy_score(y["m"][keep].numpy(), prob.argmax(1)))
        keep = ~torch.isnan(y["r"])
        truth = y["r"][keep].numpy() * 2.0 + 10.0           # back in the target's units
        pred = logits["r"][k, keep, 0].numpy() * 2.0 + 10.0
        assert matrix["tasks"]["r"]["mae"][k] == pytest.approx(skm.mean_absolute_error(truth, pred), rel=1e-6)
        assert matrix["tasks"]["r"]["r2"][k] == pytest.approx(skm.r2_score(truth, pred), rel=1e-5)
    final = final_metrics(matrix)
    assert final["b"]["auroc"] == matrix["tasks"]["b"]["auroc"][-1]
    assert final["r"]["rmse"] == matrix["tasks"]["r"]["rmse"][K]
