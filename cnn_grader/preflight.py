"""What a machine needs before it may grade anyone, checked before autograde starts.

A machine that lacks the sandbox, the data of the grading profile or a required GPU
stops with a message that says what to install: its own problem never becomes a
student's zero.
"""
from __future__ import annotations

import torch

from cnn_course import get_profile
from cnn_course.data import CorruptDataError, DataNotFoundError, dataset_root

from cnn_grader import sandbox


def problems(require_gpu: bool) -> list[str]:
    """Everything that stops this machine from grading (empty: ready)."""
    found = []
    problem = None if sandbox.sandbox_disabled() else sandbox.sandbox_problem()
    if problem:
        found.append(problem)
    profile = get_profile()
    try:
        dataset_root(profile)
    except (DataNotFoundError, CorruptDataError) as error:
        found.append(f"the grading profile {profile.name!r} needs the full FashionMNIST: "
                     f"{error} (or grade with CNN_COURSE_PROFILE=ci on the committed subset, "
                     f"a smoke test only)")
    cuda = torch.cuda.is_available()
    if require_gpu and not cuda:
        found.append("CNN_GRADER_REQUIRE_GPU is set but no CUDA GPU is visible: grade on a GPU "
                     "machine, or unset it to grade with the cpu profile")
    elif profile.name == "full" and not cuda:
        found.append("the full grading profile trains at the papers' resolutions and needs a "
                     "CUDA GPU: set CNN_COURSE_PROFILE=cpu on this machine")
    return found


def refusal(require_gpu: bool) -> str | None:
    """The message that stops grading on this machine, or None when it is ready."""
    found = problems(require_gpu)
    return ("this machine cannot grade yet, nobody was graded:\n  - " + "\n  - ".join(found)
            if found else None)
