"""The seeded, class-balanced validation split (cnn_course.data.validation_split).

``split_problems`` states the split's contract: deterministic for a seed, different for
another seed, every class's share equal up to rounding, disjoint and covering, random
within each class. The course's split must have no problem; each planted wrong split
(unshuffled, unstratified, unseeded, overlapping) must have at least one.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from cnn_course import History, fit, load_split, load_splits, split_validation, validation_split
from cnn_course.models import NaiveConvNet
from cnn_course.train import Recipe

SplitFn = Callable[[np.ndarray, float, int], tuple[np.ndarray, np.ndarray]]

# Unequal classes, stored sorted by class: a split that ignores classes or order shows it.
LABELS = np.repeat(np.arange(5), [40, 23, 61, 10, 7])


def split_problems(split: SplitFn, labels: np.ndarray = LABELS, fraction: float = 0.2) -> list[str]:
    """What is wrong with ``split`` on ``labels``: an empty list for a correct one."""
    problems = []
    train, val = split(labels, fraction, 0)
    again = split(labels, fraction, 0)
    if not (np.array_equal(train, again[0]) and np.array_equal(val, again[1])):
        problems.append("the same seed gave another split")
    if np.array_equal(val, split(labels, fraction, 1)[1]):
        problems.append("another seed gave the same split")
    if np.intersect1d(train, val).size:
        problems.append("an image is in both sets")
    if len(train) + len(val) != len(labels) or not np.array_equal(
            np.sort(np.concatenate([train, val])), np.arange(len(labels))):
        problems.append("the two sets do not cover the training set exactly once")
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        held = np.intersect1d(val, members)
        if abs(len(held) - fraction * len(members)) > 0.5:
            problems.append(f"class {c}: {len(held)} of {len(members)} held out")
        if len(held) and len(held) < len(members) and np.array_equal(held, members[:len(held)]):
            problems.append(f"class {c}: its first images are held out, not random ones")
    return problems


def unshuffled(labels, fraction, seed):
    val = np.concatenate([np.flatnonzero(labels == c)[:round(fraction * np.sum(labels == c))]
                          for c in np.unique(labels)])
    return np.setdiff1d(np.arange(len(labels)), val), np.sort(val)


def unstratified(labels, fraction, seed):
    order = np.random.default_rng(seed).permutation(len(labels))
    k = round(fraction * len(labels))
    return np.sort(order[k:]), np.sort(order[:k])


def unseeded(labels, fraction, seed):
    return validation_split(labels, fraction, seed=int(np.random.randint(1 << 30)))


def overlapping(labels, fraction, seed):
    train, val = validation_split(labels, fraction, seed)
    return np.arange(len(labels)), val


def test_the_course_split_keeps_its_contract():
    assert split_problems(validation_split) == []
    assert split_problems(validation_split, fraction=0.1) == []


@pytest.mark.parametrize("wrong", [unshuffled, unstratified, unseeded, overlapping])
def test_planted_wrong_splits_are_caught(wrong):
    assert split_problems(wrong), f"{wrong.__name__} passed the contract"


def test_same_seed_same_split_also_for_tensors():
    labels = torch.from_numpy(LABELS)
    a, b = validation_split(labels, 0.2, 5), validation_split(LABELS, 0.2, 5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_bad_fraction_is_refused():
    for fraction in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="strictly between"):
            validation_split(LABELS, fraction)


def _as_bytes(images: torch.Tensor) -> set[bytes]:
    return {bytes(row) for row in images.reshape(len(images), -1).numpy()}


def test_split_of_the_committed_subset_is_balanced_and_disjoint():
    images, labels = load_split(True)
    (train_x, train_y), (val_x, val_y) = split_validation((images, labels), 0.1, seed=0)
    assert len(train_y) + len(val_y) == len(labels)
    counts = torch.bincount(val_y, minlength=10)
    expected = (torch.bincount(labels, minlength=10).double() * 0.1).round().long()
    assert torch.equal(counts, expected)
    # disjoint: no validation image is also a training image (the subset has no duplicates)
    assert not _as_bytes(train_x) & _as_bytes(val_x)
    train, val, test = load_splits()
    assert torch.equal(val[1], val_y) and torch.equal(train[0], train_x)
    assert len(test[1]) == len(load_split(False)[1])


def test_fit_reports_validation_per_epoch_and_test_once(capsys):
    train, val, test = load_splits()
    small = (train[0][:128], train[1][:128])
    history = fit(NaiveConvNet(), small, test, Recipe(epochs=2, batch_size=64), progress=True,
                  val=val)
    assert len(history.val_acc) == 2 and history.test_acc == []
    assert history.final_test_acc is not None and 0 <= history.final_test_acc <= 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("validation accuracy" in line for line in lines[:2])
    assert "test" not in lines[0] + lines[1]
    assert lines[2].endswith(f"{history.final_test_acc:.4f}")


def test_history_keeps_its_positional_fields():
    history = History([1.0], [0.5], [0.4], [2.0], 10)
    assert history.test_acc == [0.4] and history.val_acc == [] and history.final_test_acc is None
