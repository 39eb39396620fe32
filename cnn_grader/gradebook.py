"""The course's gradebook: which database it is, and what must be in it before several
``nbgrader autograde`` processes write to it at once (grader/README.md, "A PostgreSQL
gradebook").

nbgrader creates a missing database in every process that opens it, and two processes
that do so at once collide; autograde likewise adds a missing student. ``prepare`` does
both once, before the workers start, so that they only add their own submissions.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.engine import make_url

from cnn_grader.environment import venv_first

# SQLAlchemy 2.1 reads a URL without a driver, postgresql://, as psycopg 3; the course
# installs psycopg2 (requirements-instructor.txt).
POSTGRESQL, PSYCOPG2 = "postgresql://", "postgresql+psycopg2://"


def gradebook_url(course: Path) -> str:
    """``NBGRADER_DB_URL`` when set (``postgresql://`` read with psycopg2), else nbgrader's
    SQLite file ``course/gradebook.db``."""
    url = os.environ.get("NBGRADER_DB_URL") or f"sqlite:///{course / 'gradebook.db'}"
    return PSYCOPG2 + url.removeprefix(POSTGRESQL) if url.startswith(POSTGRESQL) else url


def concurrency_problem(url: str, workers: int) -> str | None:
    """Why ``workers`` grading processes cannot share the gradebook at ``url``, or None."""
    parsed = make_url(url)
    if workers <= 1 or parsed.get_backend_name() == "postgresql":
        return None
    return (f"{workers} workers cannot write to the gradebook "
            f"{parsed.render_as_string(hide_password=True)} at once: SQLite takes one writer "
            "at a time (the others fail with 'database is locked'), and only PostgreSQL is "
            "tested with several. Grade in parallel with a PostgreSQL gradebook, "
            "NBGRADER_DB_URL=postgresql://user@host/dbname "
            "(grader/README.md, \"A PostgreSQL gradebook\"), or one student at a time with "
            "WORKERS=1.")


@contextmanager
def _interpreter_first_on_path() -> Iterator[None]:
    """nbgrader runs ``alembic`` from PATH when it creates a database: this venv's first."""
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = venv_first(saved)
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def prepare(url: str, course: Path, assignment: str, students: list[str]) -> None:
    """Before the workers start: create the gradebook's tables and the course nbgrader's
    preprocessors open ("default_course"), check that ``assignment`` was generated into it,
    and add the ``students`` it lacks."""
    with _interpreter_first_on_path(), Gradebook(url) as gradebook:
        try:
            gradebook.find_assignment(assignment)
        except MissingEntry:
            raise RuntimeError(
                f"the gradebook {make_url(url).render_as_string(hide_password=True)} has no "
                f"assignment {assignment!r}: run `nbgrader generate_assignment {assignment}` "
                f"in {course} first, with the same NBGRADER_DB_URL") from None
        for student in students:
            gradebook.update_or_create_student(student)


def points(url: str, assignment: str) -> dict[str, float]:
    """Each student's total score on ``assignment``; students without a submission are absent."""
    with Gradebook(url) as gradebook:
        return {submission.student.id: float(submission.score)
                for submission in gradebook.assignment_submissions(assignment)}
