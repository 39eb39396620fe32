"""One submission's grading, kept as data for the instructor: every part's result and
message, the phases' times, the training cache's answers, the profile and the machine.

``GradeOutsideKernel`` writes ``<folder>/<assignment>/<student>.json`` (the course's
``logs/`` folder, never a student's feedback); ``class_report`` reads them all. Points
are not here: they are the gradebook's, which the instructor may still change.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

SUFFIX = ".json"


@dataclass
class Record:
    """What the grader knows about one graded submission."""

    student: str
    assignment: str
    profile: str
    parts: dict[str, dict]  # grade_id -> {"passed": bool, "message": str, "rule": str}
    seconds: dict[str, float]  # phase -> seconds: kernel, description, checks, training
    trainings_cached: int = 0
    trainings_run: int = 0
    machine: str = field(default_factory=lambda: this_machine())
    graded_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def this_machine() -> str:
    """The host's name, CPU count and GPU, in a few words."""
    words = f"{platform.node()} ({os.cpu_count()} CPUs"
    try:
        import torch

        if torch.cuda.is_available():
            words += f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return words + ")"


def record_path(folder: Path, assignment: str, student: str) -> Path:
    return folder / assignment / f"{student}{SUFFIX}"


def write_record(folder: Path, record: Record) -> Path:
    """Write ``record`` whole (a reader never sees half of one) and return its path."""
    path = record_path(folder, record.assignment, record.student)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".part", delete=False) as out:
        json.dump(asdict(record), out, indent=1, allow_nan=True)
    os.replace(out.name, path)
    return path


def read_records(folder: Path, assignment: str) -> dict[str, Record]:
    """Every student's record of ``assignment`` under ``folder``, by student; a file that
    is not a record (hand-edited, cut short) is left out."""
    records = {}
    for path in sorted((folder / assignment).glob(f"*{SUFFIX}")):
        try:
            record = Record(**json.loads(path.read_text()))
        except (ValueError, TypeError, OSError):
            continue
        records[record.student] = record
    return records
