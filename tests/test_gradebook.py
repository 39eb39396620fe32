"""The gradebook for grading in parallel (cnn_grader/gradebook.py) on a real PostgreSQL
server (tests/postgres.py): nbgrader writes to it when NBGRADER_DB_URL names it, prepare
readies it once, and several processes write to it at once.
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from nbgrader.api import Gradebook
from sqlalchemy import inspect

from cnn_grader.environment import venv_first
from cnn_grader.gradebook import concurrency_problem, gradebook_url, points, prepare

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from generate_assignment import ASSIGNMENT, NOTEBOOK, make_course  # noqa: E402

pytestmark = pytest.mark.integration  # make test-integration

WORKERS = 8


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Path:
    """A scratch course whose assignment `nbgrader generate_assignment` wrote into the
    module's PostgreSQL database, named by NBGRADER_DB_URL as an instructor would (with
    no driver: postgresql://)."""
    course = make_course(tmp_path_factory.mktemp("postgres") / "course")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": venv_first(os.environ["PATH"]),
           "NBGRADER_DB_URL": postgres_url.replace("postgresql+psycopg2://", "postgresql://")}
    result = subprocess.run([str(bin_dir / "nbgrader"), "generate_assignment", ASSIGNMENT,
                             "--force"], cwd=course, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return course


def test_nbgrader_writes_the_postgresql_gradebook(course: Path, postgres_url: str) -> None:
    with Gradebook(postgres_url) as gradebook:
        assert "alembic_version" in inspect(gradebook.engine).get_table_names()
        assignment = gradebook.find_assignment(ASSIGNMENT)
        assert [notebook.name for notebook in assignment.notebooks] == [Path(NOTEBOOK).stem]
        assert assignment.notebooks[0].grade_cells and assignment.max_score > 0
        assert assignment.course_id == "cnn-course"
    assert not [path for path in course.parent.rglob("*.db")], "a SQLite gradebook was written"


def test_gradebook_url_is_the_environment_s_or_the_course_s_sqlite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBGRADER_DB_URL", raising=False)
    assert gradebook_url(tmp_path) == f"sqlite:///{tmp_path}/gradebook.db"
    monkeypatch.setenv("NBGRADER_DB_URL", "postgresql://grader@db.example/cnn")
    assert gradebook_url(tmp_path) == "postgresql+psycopg2://grader@db.example/cnn"
    monkeypatch.setenv("NBGRADER_DB_URL", "mysql://grader@db.example/postgresql://")
    assert gradebook_url(tmp_path) == "mysql://grader@db.example/postgresql://"


def test_prepare_adds_the_missing_students_once(course: Path, postgres_url: str) -> None:
    prepare(postgres_url, course, ASSIGNMENT, ["ada", "bo"])
    prepare(postgres_url, course, ASSIGNMENT, ["bo", "cy"])
    with Gradebook(postgres_url) as gradebook:
        assert {"ada", "bo", "cy"} <= {student.id for student in gradebook.students}


def test_prepare_refuses_an_assignment_that_was_not_generated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with pytest.raises(RuntimeError, match=f"has no assignment '{ASSIGNMENT}': run "
                                           f"`nbgrader generate_assignment {ASSIGNMENT}`"):
        prepare(url, tmp_path, ASSIGNMENT, ["ada"])
    with Gradebook(url) as gradebook:
        assert gradebook.students == []


_start: Barrier


def _wait_for_the_others(barrier: Barrier) -> None:
    global _start
    _start = barrier


def _grade(url: str, student: str, score: float) -> None:
    """One worker, as autograde writes: its student, a submission and its grades."""
    _start.wait(timeout=120)
    with Gradebook(url, course_id="cnn-course") as gradebook:
        gradebook.update_or_create_student(student)
        submission = gradebook.update_or_create_submission(ASSIGNMENT, student)
        grades = [grade for notebook in submission.notebooks for grade in notebook.grades]
        for grade in grades:
            grade.manual_score = 0.0
        grades[0].manual_score = score
        gradebook.db.commit()


def test_concurrent_writers_all_succeed_and_points_reads_their_totals(
        course: Path, postgres_url: str) -> None:
    students = [f"student{i}" for i in range(WORKERS)]
    prepare(postgres_url, course, ASSIGNMENT, [*students, "absent"])
    scores = {student: i + 0.5 for i, student in enumerate(students)}
    # Forked: a fresh interpreter takes seconds to import nbgrader.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(WORKERS, mp_context=context, initializer=_wait_for_the_others,
                             initargs=(context.Barrier(WORKERS),)) as pool:
        writes = [pool.submit(_grade, postgres_url, s, score) for s, score in scores.items()]
        for write in writes:
            write.result(timeout=300)
    assert points(postgres_url, ASSIGNMENT) == scores


def test_concurrency_problem_only_for_several_workers_without_postgresql() -> None:
    message = concurrency_problem("sqlite:////course/gradebook.db", 2)
    assert message and "SQLite" in message and "PostgreSQL" in message
    assert "NBGRADER_DB_URL=postgresql://user@host/dbname" in message and "WORKERS=1" in message
    assert "secret" not in concurrency_problem("mysql://grader:secret@db/cnn", 4)
    assert concurrency_problem("sqlite:////course/gradebook.db", 1) is None
    assert concurrency_problem("postgresql://grader@db/cnn", WORKERS) is None
    assert concurrency_problem("postgresql+psycopg2://grader@/cnn?host=/run/pg", WORKERS) is None
