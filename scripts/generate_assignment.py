"""Generate the student version of the assignment from its master with nbgrader.

    python scripts/generate_assignment.py            # writes assignments/assignment_cnn.ipynb
    python scripts/generate_assignment.py --check    # exit 1 if the committed copy is stale

The master is solutions/assignment_cnn.ipynb; grader/source/assignment_cnn/ links to it.
`nbgrader generate_assignment` (run in a scratch copy of the course, so the real
gradebook is untouched) strips solutions and hidden tests; the result, without the nbval markers
(`# NBVAL_...` comment lines, there for the course's own notebook tests; the locked
cells' checksums are recomputed), is copied to assignments/. Instructors release it to a
class with `nbgrader generate_assignment assignment_cnn` in grader/ (see README.md), which
writes the same file to grader/release/, markers included unless the course's
GenerateAssignment preprocessors drop them too (`strip_test_markers` does it here).
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cnn_grader.environment import venv_first  # noqa: E402

GRADER = ROOT / "grader"
ASSIGNMENT = "assignment_cnn"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
STUDENT_COPY = ROOT / "assignments" / NOTEBOOK
COURSE_FILES = ("nbgrader_config.py",)
PACKAGE = "cnn_grader"  # the grader's code, beside the course folder as in the repository
NBVAL_MARKERS = ("# NBVAL_IGNORE_OUTPUT", "# NBVAL_CHECK_OUTPUT", "# NBVAL_SKIP",
                 "# NBVAL_RAISES_EXCEPTION")


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run nbgrader in ``course`` with this interpreter's bin folder first on PATH."""
    env = {**os.environ, "PATH": venv_first(os.environ["PATH"]),
           "NBGRADER_DB_URL": f"sqlite:///{course / 'gradebook.db'}"}
    return subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args], cwd=course,
                          env=env, capture_output=True, text=True, check=False)


def make_course(target: Path) -> Path:
    """A scratch nbgrader course: the configuration and the master in ``target``, the
    grader's package beside it (``target``'s parent), as grader/ and cnn_grader/ are."""
    target.mkdir(parents=True, exist_ok=True)
    for name in COURSE_FILES:
        shutil.copy(GRADER / name, target / name)
    shutil.copytree(ROOT / PACKAGE, target.parent / PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    source = target / "source" / ASSIGNMENT
    source.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "solutions" / NOTEBOOK, source / NOTEBOOK)
    return target


def generate(course: Path) -> Path:
    """Run ``nbgrader generate_assignment`` in ``course``; return the released notebook."""
    result = nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    released = course / "release" / ASSIGNMENT / NOTEBOOK
    if result.returncode != 0 or not released.exists():
        raise SystemExit(f"nbgrader generate_assignment failed:\n{result.stdout}{result.stderr}")
    return released


def strip_test_markers(text: str) -> str:
    """The notebook ``text`` without nbval's comment lines; a locked cell that loses one gets
    its nbgrader checksum recomputed, so that Validate does not see it as changed."""
    import nbformat
    from nbgrader.utils import compute_checksum, is_locked

    nb = nbformat.reads(text, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        kept = [line for line in lines if line.strip() not in NBVAL_MARKERS]
        if kept == lines:
            continue
        cell.source = "\n".join(kept)
        if is_locked(cell) and "checksum" in cell.metadata.get("nbgrader", {}):
            cell.metadata.nbgrader["checksum"] = compute_checksum(cell)
    out = io.StringIO()
    nbformat.write(nb, out)
    return out.getvalue()


def student_version() -> str:
    """The student version of the current master: nbgrader's release, without the nbval
    markers (generated in a scratch copy of the course)."""
    with tempfile.TemporaryDirectory() as scratch:
        released = generate(make_course(Path(scratch) / "course"))
        return strip_test_markers(released.read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with assignments/")
    args = parser.parse_args()
    text = student_version()
    if args.check:
        if not STUDENT_COPY.exists() or STUDENT_COPY.read_text(encoding="utf-8") != text:
            print(f"{STUDENT_COPY} is stale: run `python scripts/generate_assignment.py`")
            return 1
        print(f"{STUDENT_COPY} is up to date")
        return 0
    STUDENT_COPY.write_text(text, encoding="utf-8")
    print(f"wrote {STUDENT_COPY}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
