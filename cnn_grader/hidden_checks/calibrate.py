"""Calibrate a grading profile: train the reference and its variants exactly as graded.

From the repository root (instructor machine, full FashionMNIST available)::

    PYTHONPATH=. .venv/bin/python -m cnn_grader.hidden_checks.calibrate --profile cpu --seeds 0 1 2

prints one Markdown row per run (model, who, seed, loss on the training images before
and after, accuracy, seconds, whether the structural gate rejects it) for ../CHECKS.md
and ends with a verdict per model. Who: the reference, a legitimate variant (AlexNet
with local response normalisation) and a defective model (no ReLUs, stride-2 first
convolution), each described and rebuilt as in grading. Every reference and variant
seed must pass as graded (``full``: threshold + ``MARGIN``; cpu/ci: the training loss
falls). The defect must be rejected by the structural gate and, on ``full``, also fall
below the threshold when trained with the gate switched off. A run that crashes is a
failed calibration, never a rejection. Exit status 1 when a verdict fails.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

from cnn_course import get_profile

from cnn_grader.describe import ModelResult, describe_locally
from cnn_grader.netgraph.description import Graph, Inventory

from . import checks
from .recipes import grading_recipe
from .reference import load_reference
from cnn_grader.paper import get_spec

MARGIN = 0.02  # full profile: a reference seed must clear its threshold by this much


@dataclass(frozen=True)
class Run:
    """One grading run of the calibration."""

    model: str
    who: str  # "reference", "variant" or "defective"
    seed: int
    loss_before: float
    loss_after: float
    accuracy: float
    seconds: float
    gated: bool  # rejected by the structural gate (layers, ReLUs, the paper's computation)
    crashed: str = ""  # why the run could not be made (then it proves nothing)

    def row(self) -> str:
        if self.crashed:
            return (f"| {self.model} | {self.who} | {self.seed} | crashed: {self.crashed[:120]} "
                    f"| - | - | {'rejected' if self.gated else 'passes'} |")
        return (f"| {self.model} | {self.who} | {self.seed} | {self.loss_before:.4f} -> "
                f"{self.loss_after:.4f} | {self.accuracy:.4f} | {self.seconds:.0f} | "
                f"{'rejected' if self.gated else 'passes'} |")


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


def with_lrn(base: type) -> type:
    """``base`` with local response normalisation after the first two ReLUs (the paper's)."""

    class WithLRN(base):  # type: ignore[misc, valid-type]
        def __init__(self, in_channels: int = 3, num_classes: int = 1000) -> None:
            super().__init__(in_channels, num_classes)
            relus = [i for i, m in enumerate(self.features) if isinstance(m, nn.ReLU)][:2]
            layers = list(self.features)
            for index in reversed(relus):
                layers.insert(index + 1, nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
            self.features = nn.Sequential(*layers)

    return WithLRN


def described(model: str, cls: type, profile: str
              ) -> tuple[Graph | None, Graph | Inventory | None, Graph | None, str]:
    """(paper graph, the (1, 10) network's layers, training graph, why one is missing) of
    ``cls``, described and validated as in grading."""
    spec, size = get_spec(model), get_profile(profile).image_size(model)
    result: ModelResult = describe_locally(cls, model, profile)
    if result.problem:
        return None, None, None, result.problem
    paper = result.graphs.get((3, 1000, spec.full_size))
    small = result.graphs.get((1, 10, spec.full_size)) or result.inventories.get((1, 10))
    train = result.graphs.get((1, 10, size))
    why = "; ".join(result.errors.values())
    return paper, small, train, why


def gated(model: str, paper: Graph | None, small: Graph | Inventory | None) -> bool:
    """Whether the accuracy part's structural gate rejects the network (no paper-size
    graph: the gate cannot pass)."""
    if paper is None or small is None:
        return True
    try:
        checks.structure(get_spec(model), paper, small)
    except AssertionError:
        return True
    return False


def calibrate(model: str, profile: str, seeds: list[int]) -> list[Run]:
    """Train the reference and the variant for every seed, the defect for the first; the
    defect is trained whatever the gate says (the gate switched off)."""
    reference = load_reference()[model]
    who = [("reference", reference, seeds), ("defective", defective(reference), seeds[:1])]
    if model == "alexnet":
        who.insert(1, ("variant", with_lrn(reference), seeds))
    runs = []
    for name, cls, run_seeds in who:
        paper, small, train, why = described(model, cls, profile)
        rejected = gated(model, paper, small)
        for seed in run_seeds:
            start = time.perf_counter()
            if train is None:
                run = Run(model, name, seed, math.nan, math.nan, math.nan, 0.0, rejected,
                          crashed=why or "no description at the training size")
            else:
                try:
                    before, after, acc, _ = checks.trained(get_spec(model), train, profile, seed)
                    run = Run(model, name, seed, before, after, acc,
                              time.perf_counter() - start, rejected)
                except AssertionError as error:  # training raised
                    run = Run(model, name, seed, math.nan, math.nan, math.nan, 0.0, rejected,
                              crashed=str(error))
            runs.append(run)
            print(run.row(), flush=True)
    return runs


def verdict(runs: list[Run], profile: str, threshold: float | None) -> list[str]:
    """What is wrong with the recipe given the runs (empty: it is calibrated)."""
    problems = []
    for r in runs:
        if r.who == "defective":
            if not r.gated:
                problems.append(f"defective seed {r.seed}: not rejected by the structural gate")
            if profile == "full" and r.crashed:
                problems.append(f"defective seed {r.seed}: crashed ({r.crashed[:80]}), so it "
                                f"does not show that the threshold rejects it")
            elif profile == "full" and not r.accuracy < threshold:
                problems.append(f"defective seed {r.seed}: {r.accuracy:.4f} reaches the "
                                f"threshold {threshold} with the gate switched off")
            continue
        if r.crashed:
            problems.append(f"{r.who} seed {r.seed}: crashed ({r.crashed[:80]})")
            continue
        if r.gated:
            problems.append(f"{r.who} seed {r.seed}: rejected by the structural gate")
        if profile == "full" and r.accuracy < threshold + MARGIN:
            problems.append(f"{r.who} seed {r.seed}: {r.accuracy:.4f} < threshold "
                            f"{threshold} + {MARGIN}")
        if profile != "full" and not r.loss_after < r.loss_before * (
                1 - checks.MIN_TRAINING_DECREASE):
            problems.append(f"{r.who} seed {r.seed}: the training loss did not fall enough "
                            f"({r.loss_before:.4f} -> {r.loss_after:.4f})")
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
    print("| model | who | seed | training loss | test accuracy | seconds | gate |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    failed = False
    for model in args.models:
        plan = grading_recipe(model, profile)
        problems = verdict(calibrate(model, profile, args.seeds), profile, plan.threshold)
        failed |= bool(problems)
        rule = (f"threshold {plan.threshold}" if profile == "full"
                else f"training loss falls by {checks.MIN_TRAINING_DECREASE:.1%}")
        print(f"{model}: {rule} ({plan.describe()}): "
              + ("; ".join(problems) if problems else "calibrated"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
