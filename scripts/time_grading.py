"""Time the grading of one reference submission, phase by phase, on this machine.

    CNN_COURSE_PROFILE=ci .venv/bin/python scripts/time_grading.py

builds a scratch course (as the end-to-end test does), submits the master's solution
and runs ``nbgrader autograde``; prints the grader's per-phase line (kernel and
description side by side, then the hidden checks) and the whole autograde's wall time.
The measurements in grader/CHECKS.md ("Time limits") come from this script.
"""
from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_assignment import ASSIGNMENT, NOTEBOOK, generate, make_course, nbgrader  # noqa: E402

SOLUTION_MARKER = re.compile(r"\s*### (BEGIN|END) SOLUTION")


def reference_submission(released: Path, master: Path) -> nbformat.NotebookNode:
    """The released notebook with the master's solutions filled in."""
    notebook = nbformat.read(released, as_version=4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source
                 for c in nbformat.read(master, as_version=4).cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solutions:
            cell.source = "\n".join(line for line in solutions[grade_id].splitlines()
                                    if not SOLUTION_MARKER.match(line))
    return notebook


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cnn-timing-") as scratch:
        course = make_course(Path(scratch) / "course")
        released = generate(course)
        folder = course / "submitted" / "reference" / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(reference_submission(released, course / "source" / ASSIGNMENT /
                                            NOTEBOOK), folder / NOTEBOOK)
        start = time.perf_counter()
        result = nbgrader(course, "autograde", ASSIGNMENT, "--log-level=INFO")
        seconds = time.perf_counter() - start
        lines = [line for line in (result.stdout + result.stderr).splitlines()
                 if "graded with profile" in line]
        if result.returncode != 0 or not lines:
            print(result.stdout[-3000:], result.stderr[-3000:])
            return 1
        print(lines[-1].split("] ", 1)[-1])
        print(f"nbgrader autograde of one submission: {seconds:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
