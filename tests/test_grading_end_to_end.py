"""nbgrader end to end on a scratch copy of the course: generate, autograde seven
submissions, read the gradebook, generate feedback and export grades (ci profile)."""
from __future__ import annotations

import copy
import csv
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from generate_assignment import ASSIGNMENT, NOTEBOOK, generate, make_course, nbgrader  # noqa: E402

MASTER = ROOT / "solutions" / NOTEBOOK
LOOP_TIMEOUT = 20  # seconds a non-test cell may run in this test's course


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def cell_by_id(nb, grade_id: str):
    matches = [cell for cell in nb.cells if meta(cell).get("grade_id") == grade_id]
    assert len(matches) == 1, f"expected one cell {grade_id!r} in the notebook"
    return matches[0]


def without_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines()
                     if not re.match(r"\s*### (BEGIN|END) SOLUTION", line))


def replace_once(source: str, old: str, new: str) -> str:
    assert source.count(old) == 1, f"{old!r} should occur once in the reference solution"
    return source.replace(old, new)


MASTER_NB = nbformat.read(MASTER, as_version=4)
POINTS = {meta(c)["grade_id"]: float(meta(c)["points"]) for c in MASTER_NB.cells
          if meta(c).get("grade") and not meta(c).get("solution")}
ALEXNET = {g for g in POINTS if g.startswith("alexnet_")}
VGG16 = {g for g in POINTS if g.startswith("vgg16_")}


def expected(zero: set[str]) -> dict[str, float]:
    return {g: (0.0 if g in zero else p) for g, p in POINTS.items()}


def submissions(released) -> dict[str, tuple[nbformat.NotebookNode, dict[str, float]]]:
    """Each student's notebook and the points each graded part must get."""
    reference = copy.deepcopy(released)
    for cell in reference.cells:
        if meta(cell).get("solution"):
            cell.source = without_markers(cell_by_id(MASTER_NB, meta(cell)["grade_id"]).source)

    wrong_conv2 = copy.deepcopy(reference)
    model = cell_by_id(wrong_conv2, "alexnet_model")
    model.source = replace_once(model.source, "nn.Conv2d(96, 256", "nn.Conv2d(96, 128")
    model.source = replace_once(model.source, "nn.Conv2d(256, 384", "nn.Conv2d(128, 384")

    def raising(nb, grade_id):
        broken = copy.deepcopy(nb)
        cell = cell_by_id(broken, grade_id)
        cell.source = "raise RuntimeError('not finished yet')\n" + cell.source
        return broken

    loops = copy.deepcopy(reference)
    cell = cell_by_id(loops, "vgg16_model")
    cell.source = "while True:\n    pass\n" + cell.source

    # Untouched, a restored test fails; left as `pass` it would score full points.
    edited = copy.deepcopy(released)
    cell_by_id(edited, "alexnet_parameters").source = "pass"

    # AlexNet right (VGG16 unfinished, to keep the run short): the restored test passes.
    deleted = raising(reference, "vgg16_model")
    deleted.cells.remove(cell_by_id(deleted, "alexnet_parameters"))

    conv2_parts = {"alexnet_parameters", "alexnet_feature_maps"}
    return {
        "reference": (reference, expected(set())),
        "untouched": (copy.deepcopy(released), expected(ALEXNET | VGG16)),
        "wrong_conv2": (wrong_conv2, expected(conv2_parts)),
        "model_raises": (raising(reference, "alexnet_model"), expected(ALEXNET)),
        "loops_forever": (loops, expected(VGG16)),
        "test_edited": (edited, expected(ALEXNET | VGG16)),
        "test_deleted": (deleted, expected(VGG16)),
    }


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A graded scratch course: (course folder, {student: expected points})."""
    course = make_course(tmp_path_factory.mktemp("grading") / "course")
    config = course / "nbgrader_config.py"
    text = config.read_text()
    assert '"other": 60' in text
    config.write_text(text.replace('"other": 60', f'"other": {LOOP_TIMEOUT}'))
    released = nbformat.read(generate(course), as_version=4)
    plan = submissions(released)
    for student, (nb, _) in plan.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / NOTEBOOK)
    result = nbgrader(course, "autograde", ASSIGNMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    return course, {student: points for student, (_, points) in plan.items()}


def test_master_has_graded_parts_for_both_models():
    assert ALEXNET and VGG16 and sum(POINTS.values()) > 0
    for part in ("parameters", "feature_maps"):
        assert f"alexnet_{part}" in POINTS


def test_every_part_gets_exactly_its_points(course):
    from nbgrader.api import Gradebook

    folder, plan = course
    with Gradebook(f"sqlite:///{folder / 'gradebook.db'}") as gradebook:
        for student, points in plan.items():
            notebook = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            scores = {g.name: g.score for g in notebook.grades if g.name in POINTS}
            assert scores == points, f"{student}: got {scores}"


def test_feedback_hides_hidden_tests_and_explains_failures(course):
    folder, plan = course
    result = nbgrader(folder, "generate_feedback", ASSIGNMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    for student in plan:
        html = (folder / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        for secret in ("BEGIN HIDDEN TESTS", "hidden_checks", "most recent call last",
                       "site-packages"):
            assert secret not in html, f"{student}'s feedback shows {secret!r}"
    wrong = (folder / "feedback" / "wrong_conv2" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "conv2" in wrong and "expected" in wrong
    reference = (folder / "feedback" / "reference" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "profile" in reference


def test_export_writes_every_students_total(course):
    folder, plan = course
    result = nbgrader(folder, "export", "--to", str(folder / "grades.csv"))
    assert result.returncode == 0, result.stdout + result.stderr
    with open(folder / "grades.csv", newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(plan)
    for student, points in plan.items():
        assert float(rows[student]["raw_score"]) == sum(points.values()), student
        assert float(rows[student]["max_score"]) == sum(POINTS.values())
