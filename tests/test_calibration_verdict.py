"""The calibration's verdict (cnn_grader/hidden_checks/calibrate.py) says what the GPU
calibration test promises: references clear the threshold by the margin, the defect is
rejected by the gate and, on the GPU profile, falls below the threshold when trained
with the gate off; a crash never counts as a rejection."""
from __future__ import annotations

import math

from cnn_grader.hidden_checks.calibrate import MARGIN, Run, verdict

NAN = math.nan


def run(who: str, accuracy: float = 0.95, gated: bool = False, crashed: str = "",
        before: float = 2.3, after: float = 1.0) -> Run:
    return Run("alexnet", who, 0, before, after, accuracy, 1.0, gated, crashed)


def test_a_good_calibration_has_no_problems():
    runs = [run("reference"), run("variant"), run("defective", 0.5, gated=True)]
    assert verdict(runs, "full", 0.88) == []
    assert verdict(runs, "ci", None) == []


def test_references_need_the_margin_on_the_gpu():
    assert verdict([run("reference", 0.88 + MARGIN / 2)], "full", 0.88)
    assert not verdict([run("reference", 0.88 + MARGIN)], "full", 0.88)


def test_the_defect_must_fall_below_the_threshold_with_the_gate_off():
    problems = verdict([run("defective", 0.90, gated=True)], "full", 0.88)
    assert problems and "with the gate switched off" in problems[0]


def test_a_crash_is_not_a_rejection():
    crashed = run("defective", NAN, gated=True, crashed="CUDA out of memory")
    assert any("crashed" in p for p in verdict([crashed], "full", 0.88))
    assert any("crashed" in p for p in verdict([run("reference", NAN, crashed="boom")], "ci",
                                               None))


def test_the_defect_must_be_gated_on_every_profile():
    for profile, threshold in (("full", 0.88), ("ci", None)):
        assert verdict([run("defective", 0.5, gated=False)], profile, threshold)


def test_cpu_profiles_need_a_falling_training_loss():
    assert verdict([run("reference", before=2.3, after=2.3)], "ci", None)
    assert not verdict([run("reference", before=2.3, after=2.2)], "ci", None)
