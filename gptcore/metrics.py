"""Scores for fine-tuned and evaluated tasks, in NumPy only: the metrics GLUE and the GPT-1 paper report.

GPT-1 table 2-4: accuracy (SST-2, MNLI, RTE, QNLI, SNLI, SciTail, RACE, Story Cloze), Matthews correlation (CoLA),
F1 (MRPC, QQP; binary F1 of the positive class), Pearson / Spearman correlation (STS-B). Macro-F1 is added for
multi-class tasks whose classes are unbalanced. Every function takes two equal-length 1-D sequences and returns a
plain float; a score that is undefined for the input (e.g. a correlation when one side is constant) is 0.0, as in
scikit-learn's convention for Matthews correlation, so reports stay finite.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pair(y_true: Sequence, y_pred: Sequence) -> tuple[np.ndarray, np.ndarray]:
    true, pred = np.asarray(y_true), np.asarray(y_pred)
    if true.ndim != 1 or true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got shapes {true.shape} and {pred.shape}")
    if true.size == 0:
        raise ValueError("y_true and y_pred are empty: a score needs at least one example")
    return true, pred


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """Fraction of predictions equal to the truth."""
    true, pred = _pair(y_true, y_pred)
    return float(np.mean(true == pred))


def _f1_of(true: np.ndarray, pred: np.ndarray, label: object) -> float:
    tp = np.sum((pred == label) & (true == label))
    predicted, actual = np.sum(pred == label), np.sum(true == label)
    return float(2 * tp / (predicted + actual)) if predicted + actual else 0.0


def binary_f1(y_true: Sequence, y_pred: Sequence, positive: object = 1) -> float:
    """F1 of the ``positive`` class (MRPC, QQP report this)."""
    true, pred = _pair(y_true, y_pred)
    return _f1_of(true, pred, positive)


def macro_f1(y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None) -> float:
    """Unweighted mean of per-class F1 over ``labels`` (default: every class seen in the truth or predictions)."""
    true, pred = _pair(y_true, y_pred)
    classes = list(labels) if labels is not None else sorted(set(true.tolist()) | set(pred.tolist()), key=str)
    return float(np.mean([_f1_of(true, pred, c) for c in classes]))


def matthews_corrcoef(y_true: Sequence, y_pred: Sequence) -> float:
    """Matthews correlation, multi-class form (Gorodkin 2004), which equals the binary phi coefficient for two
    classes (CoLA reports this). 0.0 when undefined (all predictions or all truths in one class)."""
    true, pred = _pair(y_true, y_pred)
    classes = sorted(set(true.tolist()) | set(pred.tolist()), key=str)
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, ([index[t] for t in true.tolist()], [index[p] for p in pred.tolist()]), 1)
    t_sum, p_sum = confusion.sum(axis=1), confusion.sum(axis=0)  # per class: true count, predicted count
    n, correct = confusion.sum(), np.trace(confusion)
    denominator = np.sqrt((n * n - p_sum @ p_sum) * (n * n - t_sum @ t_sum))
    return float((correct * n - t_sum @ p_sum) / denominator) if denominator else 0.0


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; 0.0 when either side is constant."""
    a, b = (v.astype(np.float64) for v in _pair(x, y))
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of the ranks they span (what Spearman's rho needs)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    start = 0
    for end in range(1, values.size + 1):
        if end == values.size or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # mean of ranks start+1 .. end
            start = end
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson of tie-averaged ranks); 0.0 when either side is constant."""
    a, b = _pair(x, y)
    return pearson(_average_ranks(a.astype(np.float64)), _average_ranks(b.astype(np.float64)))
