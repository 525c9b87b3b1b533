"""Clustering accuracy against ground truth."""
from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Accuracy:
    precision: float
    recall: float
    f1: float
    persons_whole: float  # share of true persons whose records all got one person id
    persons_mixed: float  # share of output persons holding more than one true person
    true_pairs: int
    predicted_pairs: int


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> Accuracy:
    """Pairwise precision/recall over records, plus person-level shares."""
    cells = Counter(zip(predicted, truth, strict=True))
    tp = sum(_pairs(n) for n in cells.values())
    pred_pairs = sum(_pairs(n) for n in Counter(predicted).values())
    true_pairs = sum(_pairs(n) for n in Counter(truth).values())
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    pred_per_true: dict[Hashable, set] = {}
    true_per_pred: dict[Hashable, set] = {}
    for p, t in cells:
        pred_per_true.setdefault(t, set()).add(p)
        true_per_pred.setdefault(p, set()).add(t)
    whole = sum(len(v) == 1 for v in pred_per_true.values()) / len(pred_per_true)
    mixed = sum(len(v) > 1 for v in true_per_pred.values()) / len(true_per_pred)
    return Accuracy(precision, recall, f1, whole, mixed, true_pairs, pred_pairs)
