"""Calibrate a grading profile: grade the reference and a defective model exactly as graded.

From the repository root (instructor machine, full FashionMNIST available)::

    PYTHONPATH=grader .venv/bin/python -m hidden_checks.calibrate --profile cpu --seeds 0 1 2

prints one Markdown row per run (model, who, seed, accuracy, seconds, whether the
nonlinearity gate rejects it) for ../CHECKS.md and ends with a verdict per model: every
reference seed must clear the threshold by ``MARGIN``, and the defective model must fall
below it or be rejected by the gate. Exit status 1 when a verdict fails.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

from cnn_course import get_profile

from . import grade
from .recipes import grading_recipe
from .reference import load_reference

MARGIN = 0.02  # a reference seed must clear its threshold by at least this much


@dataclass(frozen=True)
class Run:
    """One grading run of the calibration."""

    model: str
    who: str  # "reference" or "defective"
    seed: int
    accuracy: float
    seconds: float
    gated: bool  # rejected by the nonlinearity gate before training

    def row(self) -> str:
        return (f"| {self.model} | {self.who} | {self.seed} | {self.accuracy:.4f} | "
                f"{self.seconds:.0f} | {'rejected' if self.gated else 'passes'} |")


def without_relus(module: nn.Module) -> None:
    """Replace every ``nn.ReLU`` inside ``module`` by ``nn.Identity``."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.Identity())


def defective(base: type) -> type:
    """``base`` without its ReLUs and with a stride-2 first convolution."""

    class Defective(base):  # type: ignore[misc, valid-type]
        def __init__(self, in_channels: int = 3, num_classes: int = 1000) -> None:
            super().__init__(in_channels, num_classes)
            without_relus(self)
            first = next(m for m in self.modules() if isinstance(m, nn.Conv2d))
            first.stride = (2, 2)

    return Defective


def _graded(model: str, cls: type, profile: str, seed: int) -> float:
    """The accuracy the grader's recipe reaches (nonlinearity gate off); 0.0 if it crashes."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the check's own log line
            return grade.trained_accuracy(model, cls, profile=profile, seed=seed, gate=False)
    except AssertionError:  # training raised: the check's failure for the student
        return 0.0


def _gated(model: str, cls: type) -> bool:
    """Whether the accuracy part's nonlinearity gate rejects ``cls``."""
    try:
        grade.nonlinearities(model, cls)
    except AssertionError:
        return True
    return False


def calibrate(model: str, profile: str, seeds: list[int]) -> list[Run]:
    """Grade the reference for every seed and the defective model for the first seed."""
    reference = load_reference()[model]
    runs = []
    for who, cls, run_seeds in (("reference", reference, seeds),
                                ("defective", defective(reference), seeds[:1])):
        for seed in run_seeds:
            start = time.perf_counter()
            acc = _graded(model, cls, profile, seed)
            runs.append(Run(model, who, seed, acc, time.perf_counter() - start,
                            _gated(model, cls)))
            print(runs[-1].row(), flush=True)
    return runs


def verdict(runs: list[Run], threshold: float) -> list[str]:
    """What is wrong with a threshold given the runs (empty: it is calibrated)."""
    problems = [f"reference seed {r.seed}: {r.accuracy:.4f} < threshold {threshold} + {MARGIN}"
                for r in runs if r.who == "reference" and r.accuracy < threshold + MARGIN]
    problems += [f"reference seed {r.seed}: rejected by the nonlinearity gate"
                 for r in runs if r.who == "reference" and r.gated]
    problems += [f"defective seed {r.seed}: {r.accuracy:.4f} >= threshold {threshold} and "
                 f"not rejected by the nonlinearity gate"
                 for r in runs if r.who == "defective" and r.accuracy >= threshold and not r.gated]
    return problems


def machine() -> str:
    """The device the runs use, in words."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="full, cpu or ci (default: as graded)")
    parser.add_argument("--models", nargs="+", default=["alexnet", "vgg16"],
                        choices=["alexnet", "vgg16"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args(argv)
    profile = get_profile(args.profile).name
    print(f"calibration of profile {profile} on {machine()}, torch {torch.__version__}")
    print("| model | who | seed | test accuracy | seconds | nonlinearity gate |\n"
          "| --- | --- | --- | --- | --- | --- |")
    failed = False
    for model in args.models:
        plan = grading_recipe(model, profile)
        problems = verdict(calibrate(model, profile, args.seeds), plan.threshold)
        failed |= bool(problems)
        print(f"{model}: threshold {plan.threshold} ({plan.describe()}): "
              + ("; ".join(problems) if problems else "calibrated"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
