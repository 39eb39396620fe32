#!/usr/bin/env python
"""Generate the student exercise notebooks from the masters in solutions/.

For every ``solutions/exercise_*.ipynb`` this writes ``exercises/<same name>``:

* each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region of a code cell becomes
  ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` at the marker's indentation
  (in a markdown cell it becomes ``YOUR ANSWER HERE``);
* ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` regions are removed;
* cells tagged ``master-only`` (e.g. the note on which machine produced the outputs)
  are removed;
* ``# NBVAL_IGNORE_OUTPUT`` lines (meant for testing the masters) are dropped;
* every code cell that calls a self-check (``selfcheck.check_...``) becomes an nbgrader
  test cell worth 0 points (``grade``, ``locked``, a ``grade_id`` named after the checks,
  nbgrader's checksum): nbgrader's Validate button judges only such cells, and a check
  that fails under nbgrader writes its FAIL lines to stderr (``cnn_course.selfcheck``), so
  Validate fails an unfinished exercise and names the failing check;
* outputs, execution counts and execution metadata are cleared, and the notebook
  metadata is reduced to the kernel and the language name, so that re-executing a
  master on another machine does not change its student version.

Usage::

    python scripts/generate_exercises.py            # (re)write exercises/
    python scripts/generate_exercises.py --check    # exit 1 and list stale notebooks
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
# The master-only tag and the run metadata are the assignment generator's (nbgrader) too.
sys.path.insert(0, str(ROOT))
from cnn_grader.course_preprocessors import MASTER_ONLY_TAG, RUN_METADATA  # noqa: E402
from nbgrader.utils import compute_checksum  # noqa: E402

SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
PATTERN = "exercise_*.ipynb"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
NBVAL_MARKERS = ("# NBVAL_IGNORE_OUTPUT", "# NBVAL_CHECK_OUTPUT", "# NBVAL_SKIP")
SELFCHECK_CALL = re.compile(r"\bselfcheck\.check_(\w+)\(")


class MarkupError(ValueError):
    """A master's solution or hidden-test markers are unbalanced."""


def _strip_regions(lines: list[str], where: str, cell_type: str) -> tuple[list[str], int]:
    """Replace solution regions and drop hidden-test regions; return lines and region count."""
    out: list[str] = []
    open_marker: str | None = None
    regions = 0
    for number, line in enumerate(lines, 1):
        marker = line.strip()
        if marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            if open_marker is not None:
                raise MarkupError(f"{where}, line {number}: {marker!r} inside {open_marker!r}")
            open_marker = marker
            if marker == BEGIN_SOLUTION:
                regions += 1
                indent = line[: len(line) - len(line.lstrip())]
                if cell_type == "code":
                    out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
                else:
                    out.append(f"{indent}YOUR ANSWER HERE")
            continue
        if marker in (END_SOLUTION, END_HIDDEN):
            expected = BEGIN_SOLUTION if marker == END_SOLUTION else BEGIN_HIDDEN
            if open_marker != expected:
                raise MarkupError(f"{where}, line {number}: {marker!r} without {expected!r}")
            open_marker = None
            continue
        if open_marker is None:
            out.append(line)
    if open_marker is not None:
        raise MarkupError(f"{where}: {open_marker!r} is never closed")
    return out, regions


def count_solution_regions(master: nbformat.NotebookNode) -> int:
    """How many solution regions a master notebook holds (checks the markup too)."""
    total = 0
    for index, cell in enumerate(master.cells):
        _, regions = _strip_regions(cell.source.splitlines(), f"cell {index}", cell.cell_type)
        total += regions
    return total


def mark_test_cell(cell: nbformat.NotebookNode) -> bool:
    """Make a code cell that calls self-checks an nbgrader test cell worth 0 points.

    Returns whether the cell calls a self-check. The grade_id is ``selfcheck_`` and the
    checks' names (``selfcheck_conv2d``); the checksum lets Validate notice an edited check.
    """
    names = SELFCHECK_CALL.findall(cell.source) if cell.cell_type == "code" else []
    if not names:
        return False
    cell.metadata["nbgrader"] = {
        "grade": True, "grade_id": "selfcheck_" + "_".join(dict.fromkeys(names)),
        "locked": True, "points": 0, "schema_version": 3, "solution": False, "task": False}
    cell.metadata["nbgrader"]["checksum"] = compute_checksum(cell)
    return True


def student_version(master: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student notebook made from ``master`` (which is left unchanged)."""
    nb = copy.deepcopy(master)
    cells = []
    for index, cell in enumerate(nb.cells):
        if MASTER_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        lines, _ = _strip_regions(cell.source.splitlines(), f"{name}, cell {index}",
                                  cell.cell_type)
        if cell.cell_type == "code":
            lines = [line for line in lines if line.strip() not in NBVAL_MARKERS]
        cell.source = "\n".join(lines)
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        mark_test_cell(cell)
        cells.append(cell)
    nb.cells = cells
    # Only what does not depend on the machine that last executed the master: not the
    # Python version in language_info, nor the widgets' saved state.
    kernelspec = master.metadata.get("kernelspec") or {
        "display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata = nbformat.from_dict({"kernelspec": dict(kernelspec),
                                      "language_info": {"name": "python"}})
    return nb


def render(master_path: Path) -> str:
    """The exact text of the student notebook generated from ``master_path``."""
    master = nbformat.read(master_path, as_version=4)
    nb = student_version(master, master_path.name)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def expected_files(solutions: Path) -> dict[str, str]:
    """Student file name -> generated text, for every master in ``solutions``."""
    masters = sorted(solutions.glob(PATTERN))
    if not masters:
        raise FileNotFoundError(f"no {PATTERN} in {solutions}")
    return {path.name: render(path) for path in masters}


def stale_files(solutions: Path, exercises: Path) -> list[str]:
    """Student notebooks that are missing, out of date, or have no master."""
    wanted = expected_files(solutions)
    problems = []
    for name, text in wanted.items():
        path = exercises / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from what {solutions / name} generates")
    for path in sorted(exercises.glob(PATTERN)):
        if path.name not in wanted:
            problems.append(f"{path}: no master {solutions / path.name}")
    return problems


def write_all(solutions: Path, exercises: Path) -> list[Path]:
    """Write every student notebook; return the paths written."""
    exercises.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in expected_files(solutions).items():
        path = exercises / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing student notebooks that are stale")
    parser.add_argument("--solutions", type=Path, default=SOLUTIONS, help="masters folder")
    parser.add_argument("--exercises", type=Path, default=EXERCISES, help="output folder")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale_files(args.solutions, args.exercises)
            for line in problems:
                print(f"stale: {line}")
            if problems:
                print("regenerate with: python scripts/generate_exercises.py")
                return 1
            print(f"all student notebooks in {args.exercises} are up to date")
            return 0
        for path in write_all(args.solutions, args.exercises):
            print(f"wrote {path}")
    except (MarkupError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
