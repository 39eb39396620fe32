"""The class report (cnn_grader/class_report.py) on a gradebook and grading records made
here: points, pass rates, failures grouped by rule, the ungraded and their reasons."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from cnn_grader import class_report
from cnn_grader.environment import venv_first
from cnn_grader.grading_record import Record, read_records, write_record

ASSIGNMENT = "assignment_cnn"
PARTS = ("alexnet_logits", "alexnet_parameters", "vgg16_logits")
RULE_A = "conv{n}: kernel {k}x{k}, the paper's conv{n} has 11x11"
RULE_B = "`{code}` at forward(), line {line}: the logits pass through a softmax"
RULES = {"conv": "checks._compare_layer", "`F.s": "checks.logits"}  # message start -> rule


@pytest.fixture(autouse=True)
def venv_first_on_path(monkeypatch):
    """nbgrader creates a gradebook with the venv's ``alembic``, from PATH."""
    monkeypatch.setenv("PATH", venv_first(os.environ["PATH"]))


def make_class(course: Path, graded: dict[str, dict[str, tuple[bool, str]]],
               unscored: tuple[str, ...] = ()) -> None:
    """A gradebook where every part is worth 5 and passes score 5, grading records for
    ``graded`` (student -> part -> (passed, message)), and submissions for everyone."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        gradebook.add_assignment(ASSIGNMENT)
        gradebook.add_notebook(ASSIGNMENT, ASSIGNMENT)
        for part in PARTS:
            gradebook.add_grade_cell(part, ASSIGNMENT, ASSIGNMENT, max_score=5, cell_type="code")
        for student in [*graded, *unscored]:
            gradebook.add_student(student)
            submission = gradebook.add_submission(ASSIGNMENT, student)
            if student in graded:
                for grade in submission.notebooks[0].grades:
                    grade.auto_score = 5 if graded[student][grade.name][0] else 0
            gradebook.db.commit()
    for student, parts in graded.items():
        (course / "submitted" / student / ASSIGNMENT).mkdir(parents=True)
        write_record(course / "logs", Record(
            student=student, assignment=ASSIGNMENT, profile="ci",
            parts={p: {"passed": ok, "message": m,
                       "rule": "" if ok else RULES.get(m[:4], "checks.x")}
                   for p, (ok, m) in parts.items()},
            seconds={"kernel": 10.0, "description": 8.0, "checks": 3.0, "training": 1.0},
            trainings_cached=1, trainings_run=1, machine="testhost (2 CPUs)"))
    for student in unscored:
        (course / "submitted" / student / ASSIGNMENT).mkdir(parents=True)


def ok() -> tuple[bool, str]:
    return True, "passed"


@pytest.fixture
def course(tmp_path) -> Path:
    failing_a = {n: (False, RULE_A.format(n=1, k=k)) for n, k in ((1, 5), (2, 3), (3, 7), (4, 9))}
    graded = {
        f"s{i}": {"alexnet_logits": ok(), "alexnet_parameters": failing_a[i], "vgg16_logits": ok()}
        for i in (1, 2, 3, 4)}
    graded["s5"] = {"alexnet_logits": (False, RULE_B.format(code="F.softmax(x, 1)", line=7)),
                    "alexnet_parameters": ok(), "vgg16_logits": ok()}
    graded["s6"] = {part: ok() for part in PARTS}
    graded["hostile<script>"] = {
        "alexnet_logits": (False, "<script>alert(1)</script> at line 3"),
        "alexnet_parameters": ok(), "vgg16_logits": ok()}
    make_class(tmp_path, graded, unscored=("late", "crashed"))
    with open(tmp_path / "logs" / ASSIGNMENT / "classrun.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["student", "graded", "reason"])
        writer.writeheader()
        writer.writerow({"student": "crashed", "graded": False,
                         "reason": "autograde exited with status 1: see logs/crashed.log"})
        writer.writerow({"student": "s6", "graded": True, "reason": ""})
    return tmp_path


def test_gather_reads_points_and_the_ungraded_with_their_reasons(course):
    data = class_report.gather(course, ASSIGNMENT)
    assert data.points == {"s1": 10, "s2": 10, "s3": 10, "s4": 10, "s5": 10, "s6": 15,
                           "hostile<script>": 10}
    assert data.max_points == 15
    assert data.ungraded == {"crashed": "autograde exited with status 1: see logs/crashed.log",
                             "late": "not graded yet"}
    assert data.parts == sorted(PARTS)


def test_failures_fall_together_by_rule_not_by_student_specifics(course):
    found = class_report.failures(class_report.gather(course, ASSIGNMENT))
    assert [len(f.students) for f in found["alexnet_parameters"]] == [4]
    assert found["alexnet_parameters"][0].students == ["s1", "s2", "s3", "s4"]
    assert found["alexnet_parameters"][0].rule == "checks._compare_layer"
    logits = {(f.rule, f.pattern): f.students for f in found["alexnet_logits"]}
    assert sorted(rule for rule, _ in logits) == ["checks.logits", "checks.x"]  # kept apart
    assert "vgg16_logits" not in found


@pytest.mark.parametrize("one, other, same", [
    (RULE_A.format(n=1, k=5), RULE_A.format(n=2, k=3), True),
    (RULE_B.format(code="x.softmax(1)", line=3), RULE_B.format(code="F.softmax(x)", line=9),
     True),
    (RULE_A.format(n=1, k=5), RULE_B.format(code="x", line=1), False),
    ("the logits are 1e-3 off", "the logits are 0.25 off", True),
    ("'relu1' is missing", "'pool2' is missing", True),
])
def test_mask_keeps_the_rule_and_drops_the_specifics(one, other, same):
    assert (class_report.mask(one) == class_report.mask(other)) is same


def test_the_page_shows_the_counts_escapes_what_students_wrote_and_stands_alone(course):
    page = class_report.render(class_report.gather(course, ASSIGNMENT))
    assert "7 graded, 2 ungraded" in page
    rates = dict(re.findall(r"<td>([a-z0-9_]+)</td><td class='passed'>(\d+)</td>", page))
    assert rates == {"alexnet_logits": "5", "alexnet_parameters": "3", "vgg16_logits": "7"}
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "s1, s2, s3 …" in page  # three examples, then an ellipsis
    assert page.count("<img alt='plot' src='data:image/png;base64,") == 2
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", page)
    assert "Trainings: 7 of 14 answered by the training cache." in page
    assert "ci (7)" in page and "testhost (2 CPUs) (7)" in page


def test_a_class_not_graded_at_all_still_gets_a_page(tmp_path):
    make_class(tmp_path, {}, unscored=("a", "b"))
    page = class_report.render(class_report.gather(tmp_path, ASSIGNMENT))
    assert "0 graded, 2 ungraded" in page and "No student is graded yet." in page


def test_the_command_writes_the_page_next_to_the_gradebook(course, capsys):
    assert class_report.main(["--course", str(course), "--assignment", ASSIGNMENT]) == 0
    assert (course / f"report-{ASSIGNMENT}.html").read_text().startswith("<!DOCTYPE html>")
    assert "7 graded, 2 ungraded" in capsys.readouterr().err


def test_a_missing_gradebook_or_assignment_is_said_in_words(tmp_path):
    with pytest.raises(SystemExit, match="no gradebook at"):
        class_report.gather(tmp_path, ASSIGNMENT)
    assert not (tmp_path / "gradebook.db").exists()  # and none is made
    make_class(tmp_path, {})
    with pytest.raises(SystemExit, match="has no assignment 'other'"):
        class_report.gather(tmp_path, "other")


def test_records_round_trip_and_a_broken_one_is_left_out(tmp_path):
    record = Record(student="s", assignment=ASSIGNMENT, profile="ci",
                    parts={"alexnet_logits": {"passed": True, "message": "passed"}},
                    seconds={"kernel": float("nan")})
    write_record(tmp_path, record)
    (tmp_path / ASSIGNMENT / "broken.json").write_text("{not json")
    (tmp_path / ASSIGNMENT / "other.json").write_text('{"student": "x"}')
    read = read_records(tmp_path, ASSIGNMENT)
    assert list(read) == ["s"] and read["s"].parts == record.parts
    assert not list((tmp_path / ASSIGNMENT).glob("*.part"))
