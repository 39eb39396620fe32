"""The student bundle holds the course materials and nothing instructor-only."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from build_student_bundle import build, leaks  # noqa: E402


def solution_layer_lines() -> set[str]:
    """Lines of the assignment master's solutions that build layers."""
    master = nbformat.read(ROOT / "solutions" / "assignment_cnn.ipynb", as_version=4)
    lines = set()
    for cell in master.cells:
        for region in re.findall(r"### BEGIN SOLUTION(.*?)### END SOLUTION", cell.source, re.S):
            lines |= {line.strip() for line in region.splitlines()
                      if re.search(r"Conv2d|Linear|MaxPool2d", line)}
    return lines


def test_bundle_has_the_materials_and_no_instructor_files(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_student_bundle.py"),
                             str(tmp_path / "student")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = tmp_path / "student"
    for needed in ("README.md", "requirements.txt", "Makefile", "pyproject.toml",
                   "assignments/assignment_cnn.ipynb", "cnn_course/__init__.py",
                   "lectures/01_convolution.ipynb", "exercises/exercise_01_conv2d.ipynb"):
        assert (bundle / needed).is_file(), needed
    names = {p.relative_to(bundle).parts[0] for p in bundle.rglob("*")}
    assert not names & {"grader", "solutions", "tests", "scripts", ".ci", "data", ".venv"}
    assert leaks(bundle) == []


def test_no_line_of_the_reference_models_reaches_students(tmp_path):
    secret = solution_layer_lines()
    assert len(secret) >= 10  # AlexNet and VGG16 layers
    bundle = build(tmp_path / "student")
    for path in bundle.rglob("*"):
        if path.suffix in (".py", ".ipynb", ".md"):
            text = path.read_text(encoding="utf-8")
            shown = {line for line in secret if line in text}
            assert not shown, f"{path.relative_to(bundle)} shows solution lines {shown}"


def test_leak_guard_catches_planted_material(tmp_path):
    bundle = build(tmp_path / "student")
    (bundle / "exercises" / "extra.py").write_text("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n")
    (bundle / "grader").mkdir()
    (bundle / "grader" / "nbgrader_config.py").write_text("")
    (bundle / "assignments" / "note.md").write_text("import hidden_checks")
    found = "\n".join(leaks(bundle))
    assert "exercises/extra.py: contains 'BEGIN SOLUTION'" in found
    assert "grader/nbgrader_config.py: instructor-only file" in found
    assert "assignments/note.md: contains 'hidden_checks'" in found


def test_bundle_makefile_sets_up_the_lab_and_nothing_instructor_only(tmp_path):
    bundle = build(tmp_path / "student")
    lab = subprocess.run(["make", "-n", "lab"], cwd=bundle, capture_output=True, text=True)
    assert lab.returncode == 0, lab.stderr
    assert "pip install --quiet -r requirements.txt" in lab.stdout
    assert "jupyter lab" in lab.stdout
    for target in ("test", "bundle", "benchmark"):
        refused = subprocess.run(["make", "-n", target], cwd=bundle, capture_output=True,
                                 text=True)
        assert refused.returncode != 0 and "No rule to make target" in refused.stderr, target
