"""The class report: what a class got wrong, on one self-contained HTML page.

``make report`` (``python -m cnn_grader.class_report``) reads the gradebook (points:
SQLite or ``NBGRADER_DB_URL``), the grading records (``grading_record.py``: each part's
verdict, message and failed rule, times, the cache) and the class run's table (why a student is
ungraded), and writes ``<course>/report-<assignment>.html`` next to the gradebook. It
works after a partial run: it shows what exists and counts who is still ungraded.

The page names students and their grades: it is the instructor's, never a student's
(feedback is made from ``autograded/`` and never holds it).
"""
from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import math
import re
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import make_url

from cnn_grader.grading_record import Record, read_records
from cnn_grader.gradebook import gradebook_url

COURSE = Path(__file__).resolve().parent.parent / "grader"
ASSIGNMENT = "assignment_cnn"
EXAMPLES = 3  # students named per failure
PHASES = ("kernel", "description", "checks", "training")


@dataclass
class Failure:
    """One way a part failed: the check that failed (``runner.failed_rule``) and its
    message with each student's specifics masked."""

    rule: str
    pattern: str
    example: str  # one student's whole message
    students: list[str] = field(default_factory=list)


@dataclass
class ClassData:
    """What the report shows, gathered from the gradebook, the records and the run."""

    assignment: str
    points: dict[str, float]  # graded student -> total points (the gradebook's)
    max_points: float
    records: dict[str, Record]
    ungraded: dict[str, str]  # student -> why
    parts: list[str]  # grade ids, in the gradebook's order


def gather(course: Path, assignment: str, url: str | None = None) -> ClassData:
    """Read the gradebook at ``url`` (default: the course's), the records and the run."""
    from nbgrader.api import Gradebook, MissingEntry

    url = url or gradebook_url(course)
    database = make_url(url)
    if database.get_backend_name() == "sqlite" and not Path(database.database or "").is_file():
        raise SystemExit(f"no gradebook at {database.database}: grade first (make grade), or "
                         "set NBGRADER_DB_URL to the class's PostgreSQL gradebook")
    points: dict[str, float] = {}
    parts: list[str] = []
    max_points = 0.0
    with Gradebook(url) as gradebook:
        try:
            gradebook.find_assignment(assignment)
        except MissingEntry:
            raise SystemExit(f"the gradebook has no assignment {assignment!r}: generate it "
                             f"(nbgrader generate_assignment {assignment}) and grade first")
        for submission in gradebook.assignment_submissions(assignment):
            if submission.notebooks and all(  # a grade nobody gave counts as 0 in nbgrader
                    g.auto_score is not None or g.manual_score is not None
                    for notebook in submission.notebooks for g in notebook.grades):
                points[submission.student_id] = float(submission.score)
                max_points = float(submission.max_score)
            for notebook in submission.notebooks:
                parts += [g.name for g in notebook.grades if g.name not in parts]
    records = read_records(course / "logs", assignment)
    handed_in = _handed_in(course, assignment)
    reasons = _run_reasons(course, assignment)
    ungraded = {student: reasons.get(student) or "not graded yet"
                for student in sorted(handed_in | set(records) | set(reasons))
                if student not in points}
    return ClassData(assignment, points, max_points, records, ungraded, sorted(parts))


def _handed_in(course: Path, assignment: str) -> set[str]:
    submitted = course / "submitted"
    if not submitted.is_dir():
        return set()
    return {entry.name for entry in submitted.iterdir() if (entry / assignment).is_dir()}


def _run_reasons(course: Path, assignment: str) -> dict[str, str]:
    """Why each student the last class run left ungraded, from its table (classrun.csv)."""
    table = course / "logs" / assignment / "classrun.csv"
    if not table.is_file():
        return {}
    with open(table, newline="") as handle:
        return {row["student"]: row.get("reason", "") for row in csv.DictReader(handle)
                if row.get("graded") == "False" and row.get("student")}


def failures(data: ClassData) -> dict[str, list[Failure]]:
    """For each part, its failures grouped by the rule that failed and the masked message,
    the most frequent first."""
    grouped: dict[str, dict[tuple[str, str], Failure]] = defaultdict(dict)
    for student, record in sorted(data.records.items()):
        for part, result in record.parts.items():
            if result["passed"]:
                continue
            key = (result.get("rule", ""), mask(result["message"]))
            failure = grouped[part].setdefault(key, Failure(*key, result["message"]))
            failure.students.append(student)
    return {part: sorted(found.values(), key=lambda f: (-len(f.students), f.rule, f.pattern))
            for part, found in grouped.items()}


def mask(message: str) -> str:
    """``message`` with what differs between students replaced: quoted code, numbers and
    layer names (``conv3``, ``fc6``), so that one rule's failures fall together."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    first = re.sub(r"`[^`]*`", "`…`", first)
    first = re.sub(r"'[^']*'", "'…'", first)
    first = re.sub(r"\b([A-Za-z_]+?)\d+\b", r"\1N", first)
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", first)


def pass_rates(data: ClassData) -> dict[str, tuple[int, int]]:
    """Part -> (passed, graded) over the records."""
    rates: dict[str, tuple[int, int]] = {}
    for part in data.parts or sorted({p for r in data.records.values() for p in r.parts}):
        verdicts = [r.parts[part]["passed"] for r in data.records.values() if part in r.parts]
        rates[part] = (sum(verdicts), len(verdicts))
    return rates


def render(data: ClassData) -> str:
    """The report as one HTML page: plots inline, no file or network besides it."""
    records = list(data.records.values())
    rates = pass_rates(data)
    sections = [
        f"<h1>Class report: {_e(data.assignment)}</h1>",
        f"<p>{len(data.points)} graded, {len(data.ungraded)} ungraded. Written "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the gradebook and "
        f"{len(records)} grading records. {_e(_where(records))}</p>",
        "<h2>Total points</h2>", _points_section(data),
        "<h2>Each part</h2>", _rates_section(rates),
        "<h2>What failed</h2>", _failures_section(failures(data), rates),
        "<h2>Ungraded</h2>", _ungraded_section(data.ungraded),
        "<h2>Time and the training cache</h2>", _time_section(records),
    ]
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;"
             "text-align:left;vertical-align:top}code{background:#f4f4f4}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Class report "
            f"{_e(data.assignment)}</title><style>{style}</style></head><body>"
            + "\n".join(sections) + "</body></html>\n")


def _where(records: list[Record]) -> str:
    profiles = Counter(r.profile for r in records)
    machines = Counter(r.machine for r in records)
    if not records:
        return ""
    return ("Profile: " + ", ".join(f"{p} ({n})" for p, n in profiles.most_common())
            + ". Machines: " + ", ".join(f"{m} ({n})" for m, n in machines.most_common()) + ".")


def _points_section(data: ClassData) -> str:
    if not data.points:
        return "<p>No student is graded yet.</p>"
    values = sorted(data.points.values())
    summary = (f"<p id='points-summary'>Median {statistics.median(values):g} of "
               f"{data.max_points:g}; lowest {values[0]:g}, highest {values[-1]:g}.</p>")

    def draw(axes) -> None:
        bins = max(1, min(20, int(data.max_points) or 1))
        axes.hist(values, bins=bins, range=(0, data.max_points or 1), color="#4c72b0")
        axes.set_xlabel(f"total points (of {data.max_points:g})")
        axes.set_ylabel("students")
    rows = "".join(f"<tr><td>{_e(s)}</td><td>{p:g}</td></tr>"
                   for s, p in sorted(data.points.items()))
    return (summary + _figure(draw) + "<details><summary>Every student's points</summary>"
            f"<table id='points'><tr><th>student</th><th>points</th></tr>{rows}</table>"
            "</details>")


def _rates_section(rates: dict[str, tuple[int, int]]) -> str:
    if not rates:
        return "<p>No part has been checked yet.</p>"

    def draw(axes) -> None:
        names = list(rates)
        shares = [100 * passed / graded if graded else 0 for passed, graded in rates.values()]
        axes.barh(names[::-1], shares[::-1], color="#55a868")
        axes.set_xlim(0, 100)
        axes.set_xlabel("students who passed (%)")
    rows = "".join(f"<tr><td>{_e(part)}</td><td class='passed'>{passed}</td>"
                   f"<td class='graded'>{graded}</td></tr>"
                   for part, (passed, graded) in rates.items())
    return (_figure(draw, height=0.35 * len(rates) + 1) +
            f"<table id='rates'><tr><th>part</th><th>passed</th><th>of</th></tr>{rows}</table>")


def _failures_section(found: dict[str, list[Failure]],
                      rates: dict[str, tuple[int, int]]) -> str:
    if not found:
        return "<p>No part failed.</p>"
    blocks = []
    for part in sorted(found, key=lambda p: (rates.get(p, (0, 0))[0] - rates.get(p, (0, 0))[1], p)):
        rows = "".join(
            f"<tr><td class='count'>{len(f.students)}</td><td>{_rule_label(f.rule)}"
            f"<code>{_e(f.pattern)}</code>"
            f"<br>for example: {_e(f.example)}</td>"
            f"<td>{_e(', '.join(f.students[:EXAMPLES]))}"
            f"{' …' if len(f.students) > EXAMPLES else ''}</td></tr>"
            for f in found[part])
        blocks.append(f"<h3>{_e(part)}</h3><table class='failures' data-part='{_e(part)}'>"
                      "<tr><th>students</th><th>the rule that failed, and its message (each "
                      f"student's specifics masked)</th><th>who</th></tr>{rows}</table>")
    return "\n".join(blocks)


def _rule_label(rule: str) -> str:
    """The failed check's name, as grader/CHECKS.md and the code call it."""
    return f"<b class='rule'>{_e(rule)}</b><br>" if rule else ""


def _ungraded_section(ungraded: dict[str, str]) -> str:
    if not ungraded:
        return "<p>Every student who handed in is graded.</p>"
    rows = "".join(f"<tr><td>{_e(s)}</td><td>{_e(why)}</td></tr>"
                   for s, why in sorted(ungraded.items()))
    return f"<table id='ungraded'><tr><th>student</th><th>why</th></tr>{rows}</table>"


def _time_section(records: list[Record]) -> str:
    if not records:
        return "<p>No grading record yet.</p>"
    rows = []
    for phase in PHASES:
        values = [r.seconds[phase] for r in records
                  if isinstance(r.seconds.get(phase), (int, float))
                  and not math.isnan(r.seconds[phase])]
        if values:
            rows.append(f"<tr><td>{phase}</td><td>{statistics.median(values):.1f}</td>"
                        f"<td>{max(values):.1f}</td><td>{sum(values):.0f}</td></tr>")
    cached = sum(r.trainings_cached for r in records)
    total = cached + sum(r.trainings_run for r in records)
    return ("<table id='phases'><tr><th>phase</th><th>median s</th><th>longest s</th>"
            f"<th>total s</th></tr>{''.join(rows)}</table>"
            f"<p id='cache'>Trainings: {cached} of {total} answered by the training cache.</p>"
            "<p>The kernel and the description run side by side; the checks include the "
            "training.</p>")


def _figure(draw, height: float = 3.0) -> str:
    """A matplotlib figure drawn by ``draw(axes)``, inline as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, height))
    try:
        draw(axes)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
    finally:
        pyplot.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='plot' src='data:image/png;base64,{data}'>"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--course", type=Path, default=COURSE, help="nbgrader's course folder")
    parser.add_argument("--assignment", default=ASSIGNMENT)
    parser.add_argument("--output", type=Path, help="default: <course>/report-<assignment>.html")
    args = parser.parse_args(argv)
    course = args.course.resolve()
    data = gather(course, args.assignment)
    output = args.output or course / f"report-{args.assignment}.html"
    output.write_text(render(data))
    print(f"{len(data.points)} graded, {len(data.ungraded)} ungraded: the class report is "
          f"{output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
