"""GPU calibration of the ``full`` grading profile (skipped without CUDA).

Run on a GPU machine, from the repository root::

    CNN_COURSE_PROFILE=full PYTHONPATH=grader python -m pytest -s \\
        grader/hidden_checks/test_gpu_calibration.py

It grades the reference AlexNet and VGG16 (from the master notebook) with the full
recipes for seeds 0, 1, 2 (``CALIBRATION_SEEDS="0 1 2"``), and a defective AlexNet and
VGG16 (no ReLUs, a wrong stride) with the nonlinearity gate switched off, printing
Markdown rows of accuracies and seconds (``hidden_checks.calibrate``). Copy them into
grader/CHECKS.md and set the ``full`` thresholds in recipes.py so that every reference
seed clears its threshold by ``calibrate.MARGIN`` and the defective models fall below
it; then mark them calibrated. About 7 minutes on one H100 (estimate).
"""
from __future__ import annotations

import os

import pytest
import torch

from hidden_checks.calibrate import calibrate, machine, verdict
from hidden_checks.recipes import grading_recipe

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SEEDS = [int(s) for s in os.environ.get("CALIBRATION_SEEDS", "0 1 2").split()]


@pytest.mark.parametrize("model", ["alexnet", "vgg16"])
def test_full_profile_calibration(model):
    plan = grading_recipe(model, "full")
    print(f"\n{model} full profile on {machine()} (threshold {plan.threshold}, "
          f"calibrated={plan.calibrated})")
    assert verdict(calibrate(model, "full", SEEDS), "full", plan.threshold) == []
