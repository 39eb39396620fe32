"""GPU calibration of the ``full`` grading profile (skipped without CUDA).

Run on a GPU machine, from the repository root::

    CNN_COURSE_PROFILE=full PYTHONPATH=. python -m pytest -s \\
        cnn_grader/hidden_checks/test_gpu_calibration.py

It grades the reference AlexNet and VGG16 (from the master notebook) with the full
recipes for seeds 0, 1, 2 (``CALIBRATION_SEEDS="0 1 2"``), an AlexNet with the paper's
local response normalisation, and a defective AlexNet and VGG16 (no ReLUs, a stride-2
first convolution) trained with the structural gate switched off, printing Markdown rows
of accuracies and seconds (``hidden_checks.calibrate``). It fails unless every
reference and variant seed clears its threshold by ``calibrate.MARGIN``, each defect is
rejected by the gate and, trained anyway, stays below the threshold; a run that crashes
fails it (a crash is not a rejection: ``calibrate.verdict``, tested without a GPU in
tests/test_calibration_verdict.py). Copy the rows into grader/CHECKS.md, set the
``full`` thresholds in recipes.py and mark them calibrated. About 7 minutes on one H100
(estimate).
"""
from __future__ import annotations

import os

import pytest
import torch

from cnn_grader.hidden_checks.calibrate import calibrate, machine, verdict
from cnn_grader.hidden_checks.recipes import grading_recipe

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SEEDS = [int(s) for s in os.environ.get("CALIBRATION_SEEDS", "0 1 2").split()]


@pytest.mark.parametrize("model", ["alexnet", "vgg16"])
def test_full_profile_calibration(model):
    plan = grading_recipe(model, "full")
    print(f"\n{model} full profile on {machine()} (threshold {plan.threshold}, "
          f"calibrated={plan.calibrated})")
    assert verdict(calibrate(model, "full", SEEDS), "full", plan.threshold) == []
