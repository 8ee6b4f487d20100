"""Metrics agree with scikit-learn and with hand counts; the bootstrap CI behaves like one."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score

from attribench.training.metrics import bootstrap_ci, classification_metrics, plot_confusion

LABELS = ["real", "sd15", "sdxl", "dalle3"]
# 12 test images; 8 correct by hand: real 3/3, sd15 2/4, sdxl 2/3, dalle3 1/2.
Y_TRUE = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3]
Y_PRED = [0, 0, 0, 1, 1, 2, 3, 2, 2, 1, 3, 0]


def test_matches_sklearn_and_hand_counts():
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert m["accuracy"] == pytest.approx(8 / 12)
    for ours, theirs in [("macro_precision", precision_score), ("macro_recall", recall_score), ("macro_f1", f1_score)]:
        assert m[ours] == pytest.approx(theirs(Y_TRUE, Y_PRED, average="macro", zero_division=0))
    per_class = recall_score(Y_TRUE, Y_PRED, average=None, zero_division=0)
    assert [m["per_class_accuracy"][lab] for lab in LABELS] == pytest.approx(per_class)
    assert m["per_class_accuracy"] == pytest.approx({"real": 1.0, "sd15": 0.5, "sdxl": 2 / 3, "dalle3": 0.5})
    assert m["confusion_matrix"] == confusion_matrix(Y_TRUE, Y_PRED).tolist()
    assert sum(map(sum, m["confusion_matrix"])) == 12


def test_label_strings_equal_indices():
    as_str = classification_metrics([LABELS[i] for i in Y_TRUE], [LABELS[i] for i in Y_PRED], LABELS)
    assert as_str == classification_metrics(np.array(Y_TRUE), np.array(Y_PRED), LABELS)


def test_class_without_test_images():
    m = classification_metrics([0, 0, 1], [0, 1, 1], ["a", "b", "c"])
    assert m["per_class_accuracy"]["c"] is None
    assert np.array(m["confusion_matrix"]).shape == (3, 3)


def test_bootstrap_ci_contains_estimate_and_narrows():
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 500, 5000):
        y_true = rng.integers(0, 4, n)
        y_pred = np.where(rng.random(n) < 0.8, y_true, (y_true + 1) % 4)
        acc = float(np.mean(y_true == y_pred))
        lo, hi = bootstrap_ci(y_true, y_pred, n_boot=1000, seed=0)
        assert lo <= acc <= hi
        # Percentile bootstrap of a proportion ~ normal interval 2 * 1.96 * sqrt(p(1-p)/n).
        assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(acc * (1 - acc) / n), rel=0.25)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert bootstrap_ci(y_true, y_pred, seed=3) == bootstrap_ci(y_true, y_pred, seed=3)


def test_bootstrap_chunking_large_test_set():
    n = 40_000  # > 10M / 1000 rows: forces several resampling chunks
    y_true = np.zeros(n, dtype=int)
    y_pred = (np.arange(n) % 10 == 0).astype(int)  # accuracy exactly 0.9
    lo, hi = bootstrap_ci(y_true, y_pred, n_boot=1000)
    assert lo < 0.9 < hi and hi - lo < 0.01


def test_plot_confusion_png(tmp_path):
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    out = plot_confusion(m["confusion_matrix"], LABELS, tmp_path / "cm.png", "toy")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
