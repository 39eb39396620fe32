"""The committed student assignment is nbgrader's output for the current master."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import generate_assignment  # noqa: E402


@pytest.fixture(scope="module")
def generated() -> str:
    """nbgrader's student version of the current master (generated once for the module)."""
    return generate_assignment.student_version()


@pytest.mark.parametrize("edit, code, words", [
    (lambda text: text, 0, "is up to date"),
    (lambda text: text.replace("AlexNet", "AlexNet2", 1), 1, "is stale"),
])
def test_check_compares_the_committed_version_with_a_fresh_one(edit, code, words, generated,
                                                                tmp_path, monkeypatch, capsys):
    # `generate_assignment.py --check` on the committed copy, and on a stale one
    copy = tmp_path / "assignment_cnn.ipynb"
    copy.write_text(edit(generate_assignment.STUDENT_COPY.read_text()))
    monkeypatch.setattr(generate_assignment, "STUDENT_COPY", copy)
    monkeypatch.setattr(generate_assignment, "student_version", lambda: generated)
    monkeypatch.setattr(sys, "argv", ["generate_assignment.py", "--check"])
    assert generate_assignment.main() == code
    assert words in capsys.readouterr().out


def test_committed_student_version_is_up_to_date(generated):
    assert generate_assignment.STUDENT_COPY.read_text(encoding="utf-8") == generated, (
        "assignments/assignment_cnn.ipynb is stale: run `python scripts/generate_assignment.py`")


def test_student_version_has_blanks_and_nothing_hidden():
    nb = nbformat.read(generate_assignment.STUDENT_COPY, as_version=4)
    text = "\n".join(cell.source for cell in nb.cells)
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "hidden_checks", "nn.Linear(4096"):
        assert secret not in text
    assert text.count("raise NotImplementedError()") >= 4  # __init__ and forward of both
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
    assert not any("master-only" in cell.metadata.get("tags", []) for cell in nb.cells)
    # nothing left of the master's run: no timings, no saved progress-bar widgets
    assert "widgets" not in nb.metadata
    assert not any("execution" in cell.metadata for cell in nb.cells)
    assert all(cell.get("execution_count") is None for cell in nb.cells if cell.cell_type == "code")


def test_student_version_carries_no_test_markers_and_valid_checksums():
    """nbval's markers are for the course's own tests; the cells that lose one keep a
    checksum that matches, so that Validate does not report them as changed."""
    from nbgrader.utils import compute_checksum, is_locked

    nb = nbformat.read(generate_assignment.STUDENT_COPY, as_version=4)
    assert "NBVAL" not in generate_assignment.STUDENT_COPY.read_text().upper()
    locked = [cell for cell in nb.cells if is_locked(cell)]
    assert locked
    for cell in locked:
        assert cell.metadata.nbgrader["checksum"] == compute_checksum(cell), cell.source[:60]


def test_marker_stripping_recomputes_the_checksum():
    from nbgrader.utils import compute_checksum

    cell = nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT\nprint(1)")
    cell.metadata["nbgrader"] = {"grade": False, "grade_id": "x", "locked": True,
                                 "schema_version": 3, "solution": False}
    cell.metadata.nbgrader["checksum"] = compute_checksum(cell)
    nb = nbformat.v4.new_notebook(cells=[cell])
    stripped = nbformat.reads(generate_assignment.strip_test_markers(nbformat.writes(nb)), 4)
    [out] = stripped.cells
    assert out.source == "print(1)"
    assert out.metadata.nbgrader["checksum"] == compute_checksum(out) != cell.metadata.nbgrader["checksum"]
