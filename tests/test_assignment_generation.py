"""The committed student assignment is nbgrader's output for the current master."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "generate_assignment.py"
sys.path.insert(0, str(ROOT / "scripts"))
import generate_assignment  # noqa: E402


def test_committed_student_version_is_up_to_date():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stale_student_version_is_reported(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "assignment_cnn.ipynb"
    stale.write_text(generate_assignment.STUDENT_COPY.read_text().replace("AlexNet", "AlexNet2", 1))
    monkeypatch.setattr(generate_assignment, "STUDENT_COPY", stale)
    monkeypatch.setattr(sys, "argv", ["generate_assignment.py", "--check"])
    assert generate_assignment.main() == 1
    assert "is stale" in capsys.readouterr().out


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
