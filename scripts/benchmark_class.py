"""Measure grading a class: sequential `nbgrader autograde` against cnn_grader.classrun.

    .venv/bin/python scripts/benchmark_class.py --students 24 --out build/class-benchmark

Builds a scratch course (scripts/generate_assignment.py) with a generated class: the
end-to-end test's submissions (tests/test_grading_end_to_end.py: correct styles, defects,
hostile and careless ones) and more students written in other correct styles (renamed
attributes, in-place ReLUs) and repeats of the defects. ``--correct N`` builds instead a
class where N students wrote the reference, each in a spelling of its own, and the rest
are the end-to-end test's incorrect or hostile submissions. Then it grades the class
three times, each from nothing (no gradebook rows, an empty training cache):

1. sequential `nbgrader autograde` with the training cache off (grading before the cache);
2. `python -m cnn_grader.classrun --workers 1`;
3. `python -m cnn_grader.classrun --workers 2` (``--workers`` picks these runs; ``--gpus``
   is passed on to them).

Each run's busy CPU time is the whole machine's (``/proc/stat``), so nothing else should
run meanwhile; the sequential run's bounds what any number of workers can reach on this
machine's cores, and the report states that bound.

The classrun runs use a PostgreSQL gradebook: ``--db-url`` names a server's maintenance
URL, else a throwaway server starts here (tests/postgres.py). It writes ``results.json``
and ``results.md`` (grades of every run, wall times, phase sums, cache hits, seconds spent
training) to ``--out``.
The cell and description limits are the end-to-end test's (10 s, 90 s), so that the
students whose code hangs cost minutes, not a quarter of an hour.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]
os.environ.setdefault("CNN_COURSE_PROFILE", "ci")

import nbformat  # noqa: E402

from generate_assignment import ASSIGNMENT, NOTEBOOK, generate, make_course  # noqa: E402

from cnn_grader.environment import venv_first  # noqa: E402

STYLES = [  # other spellings of the reference: the same computation
    {"self.features": "self.body", "self.classifier": "self.head"},
    {"self.features": "self.convs", "self.avgpool": "self.pool"},
    {"self.classifier": "self.fc_stack"},
    {"nn.ReLU(inplace=True)": "nn.ReLU()"},
    {"self.features": "self.extractor", "nn.ReLU(inplace=True)": "nn.ReLU()"},
    {"self.avgpool": "self.adaptive"},
    {"self.classifier": "self.mlp", "self.avgpool": "self.squash"},
    {"self.features": "self.stem"},
]


def restyled(notebook, renames: dict[str, str]):
    """``notebook`` with its model cells' names changed (the same networks)."""
    from test_grading_end_to_end import cell_by_id

    changed = copy.deepcopy(notebook)
    for grade_id in ("alexnet_model", "vgg16_model"):
        cell = cell_by_id(changed, grade_id)
        for old, new in renames.items():
            cell.source = cell.source.replace(old, new)
    return changed


NAMES = {  # for --correct: each student combines one choice of every row
    "self.features": ("self.features", "self.body", "self.convs", "self.stem"),
    "self.classifier": ("self.classifier", "self.head", "self.mlp", "self.fc_stack"),
    "nn.ReLU(inplace=True)": ("nn.ReLU(inplace=True)", "nn.ReLU()"),
}
CORRECT_CASES = ("reference", "variants", "careless")  # the end-to-end cases graded 100


def mostly_correct(released, size: int, correct: int) -> dict[str, tuple]:
    """``correct`` students who wrote the reference, each in a spelling of their own (no
    two notebooks alike: nbgrader's one process could reuse nothing), then the
    end-to-end test's other cases and their repeats up to ``size``."""
    from itertools import product

    from test_grading_end_to_end import submissions

    cases = submissions(released)
    spellings = [dict(zip(NAMES, choice)) for choice in product(*NAMES.values())]
    if correct > len(spellings) or correct > size:
        raise SystemExit(f"--correct must be at most {min(len(spellings), size)}")
    reference = cases["reference"]
    students = {f"correct{index + 1}": (restyled(reference[0], renames), reference[1])
                for index, renames in enumerate(spellings[:correct])}
    defects = [name for name in cases if name not in CORRECT_CASES]
    for index in range(size - correct):
        name = defects[index % len(defects)]
        students[f"{name}{index // len(defects) + 1}"] = cases[name]
    return students


def class_of(released, size: int) -> dict[str, tuple]:
    """``size`` students: the end-to-end cases, restyled references, repeated defects."""
    from test_grading_end_to_end import submissions

    cases = submissions(released)
    students = dict(cases)
    reference = cases["reference"]
    for index, renames in enumerate(STYLES):
        students[f"style{index + 1}"] = (restyled(reference[0], renames), reference[1])
    repeats = [name for name in cases if name not in ("reference",)]
    index = 0
    while len(students) < size:
        name = repeats[index % len(repeats)]
        students[f"{name}_again{index // len(repeats) + 1}"] = cases[name]
        index += 1
    return dict(list(students.items())[:size])


def scratch_course(folder: Path, size: int, correct: int | None = None
                   ) -> tuple[Path, dict[str, float]]:
    course = make_course(folder / "course")
    config = course / "nbgrader_config.py"
    text = config.read_text()
    for setting, value in (("CELL_TIMEOUT = ", 10), ("DESCRIBE_SECONDS = ", 90)):
        text = re.sub(rf"^{setting}.*$", f"{setting}{value}", text, flags=re.M)
    config.write_text(text)
    released = nbformat.read(generate(course), as_version=4)
    expected = {}
    chosen = (class_of(released, size) if correct is None
              else mostly_correct(released, size, correct))
    for student, (notebook, points) in chosen.items():
        target = course / "submitted" / student / ASSIGNMENT
        target.mkdir(parents=True)
        nbformat.write(notebook, target / NOTEBOOK)
        if student.startswith("careless"):
            (target / "notes.txt").write_text("my notes")
        expected[student] = float(sum(points.values()))
    return course, expected


def fresh_copy(course: Path, into: Path) -> Path:
    """The course and the grader beside it, without grades, logs or a training cache."""
    shutil.copytree(course.parent, into, ignore=shutil.ignore_patterns(
        "autograded", "feedback", "gradebook.db", "logs", "cache", "__pycache__"))
    return into / course.name


def venv_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PATH"] = venv_first(env["PATH"])
    return env


@contextmanager
def postgres(url: str | None):
    """Yields a function that creates a database and returns its URL."""
    import psycopg2
    from sqlalchemy.engine import make_url

    if url:
        server = make_url(url)

        def create(name: str) -> str:
            connection = psycopg2.connect(server.render_as_string(hide_password=False)
                                          .replace("+psycopg2", ""))
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
                cursor.execute(f'CREATE DATABASE "{name}"')
            connection.close()
            return server.set(database=name).render_as_string(hide_password=False)
        yield create
        return
    import postgres as throwaway

    generator = throwaway.postgres_server.__wrapped__()
    folder = next(generator)
    try:
        def create(name: str) -> str:
            connection = psycopg2.connect(dbname="postgres", user=throwaway.SUPERUSER,
                                          host=str(folder))
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
            connection.close()
            return f"postgresql+psycopg2://{throwaway.SUPERUSER}@/{name}?host={folder}"
        yield create
    finally:
        next(generator, None)


def generate_in(course: Path, env: dict[str, str]) -> None:
    """`nbgrader generate_assignment` into the copy's own gradebook."""
    generated = subprocess.run([str(Path(sys.executable).parent / "nbgrader"),
                                "generate_assignment", ASSIGNMENT, "--force"], cwd=course,
                               env=env, capture_output=True, text=True)
    if generated.returncode != 0:
        raise SystemExit(f"generate_assignment failed:\n{generated.stderr[-3000:]}")


def busy_cpu_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (``/proc/stat``: user,
    nice, system, irq, softirq, steal). Taken machine-wide because the rusage of this
    process's children misses much of grading's work, most likely the sandboxed kernels
    and describing processes (2026-12-01: rusage said 0.73 cores where vmstat showed 1.61
    busy). A measurement therefore needs a quiet machine."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@contextmanager
def measured(into: dict) -> Iterator[None]:
    """Puts the block's wall seconds and the machine's busy CPU-seconds into ``into``."""
    cpu, start = busy_cpu_seconds(), time.perf_counter()
    yield
    into["wall_seconds"] = time.perf_counter() - start
    into["cpu_seconds"] = busy_cpu_seconds() - cpu


def sequential(course: Path) -> dict:
    from cnn_grader.classrun import PHASES
    from cnn_grader.gradebook import points

    url = f"sqlite:///{course / 'gradebook.db'}"
    generate_in(course, venv_env(NBGRADER_DB_URL=url))
    times: dict = {}
    with measured(times):
        result = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "autograde",
                                 ASSIGNMENT], cwd=course, capture_output=True, text=True,
                                env=venv_env(NBGRADER_DB_URL=url, CNN_GRADER_CACHE=""))
    if result.returncode != 0:
        raise SystemExit(f"nbgrader autograde failed:\n{result.stderr[-20000:]}")
    found = [m.groupdict() for m in PHASES.finditer(result.stderr)]
    return {**times, "points": points(url, ASSIGNMENT),
            **{f"{phase}_seconds": sum(float(m[phase]) for m in found if m[phase] != "nan")
               for phase in ("kernel", "description", "checks")},
            "cached": sum(int(m["cached"] or 0) for m in found),
            "trained": sum(int(m["trained"] or 0) for m in found),
            "training_seconds": sum(float(m["training"] or 0) for m in found)}


def parallel(course: Path, url: str, workers: int, gpus: int | None = None) -> dict:
    import csv

    from cnn_grader.gradebook import points

    env = venv_env(NBGRADER_DB_URL=url)
    generate_in(course, env)
    times: dict = {}
    with measured(times):
        result = subprocess.run([sys.executable, "-m", "cnn_grader.classrun", "--course",
                                 str(course), "--workers", str(workers),
                                 *(["--gpus", str(gpus)] if gpus is not None else [])],
                                cwd=ROOT, env=env,
                                capture_output=True, text=True)
    with open(course / "logs" / ASSIGNMENT / "classrun.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {**times, "returncode": result.returncode, "table": result.stdout,
            "points": points(url, ASSIGNMENT),
            **{f"{phase}_seconds": sum(float(r[phase]) for r in rows if r[phase] != "nan")
               for phase in ("kernel", "description", "checks")},
            "cached": sum(int(r["cached"]) for r in rows),
            "trained": sum(int(r["trained"]) for r in rows),
            "training_seconds": sum(float(r["training"]) for r in rows),
            "ungraded": [r["student"] for r in rows if r["graded"] != "True"]}


def report(runs: dict, expected: dict[str, float]) -> str:
    base = runs["sequential"]
    lines = ["| run | wall | speed-up | cores busy | kernel | description | checks | trainings "
             "run / answered by the cache | training time (share of sequential) | grades "
             "equal to sequential |", "|---" * 9 + "|---|"]
    for name, run in runs.items():
        same = run["points"] == base["points"]
        share = run["training_seconds"] / base["training_seconds"] if base[
            "training_seconds"] else float("nan")
        lines.append(
            f"| {name} | {run['wall_seconds']:.0f} s | "
            f"{base['wall_seconds'] / run['wall_seconds']:.2f} | "
            f"{run['cpu_seconds'] / run['wall_seconds']:.2f} | {run['kernel_seconds']:.0f} s"
            f" | {run['description_seconds']:.0f} s | {run['checks_seconds']:.0f} s | "
            f"{run['trained']} / {run['cached']} | {run['training_seconds']:.0f} s "
            f"({share:.0%}) | {'yes' if same else 'NO'} |")
    wrong = {s: (p, base["points"].get(s)) for s, p in expected.items()
             if base["points"].get(s) != p}
    cores = os.cpu_count() or 1
    lines += ["", f"The machine was busy {base['cpu_seconds']:.0f} CPU-seconds during the "
              f"sequential run's {base['wall_seconds']:.0f} s ("
              f"{base['cpu_seconds'] / base['wall_seconds']:.2f} of its {cores} cores on "
              f"average, /proc/stat): no number of workers can be more than "
              f"{base['wall_seconds'] * cores / base['cpu_seconds']:.2f} times as fast, "
              f"before any saving from the training cache."]
    lines.append("")
    lines.append(f"Students: {len(expected)}; sequential grades that differ from the "
                 f"end-to-end test's expectations: {wrong or 'none'}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "class-benchmark")
    parser.add_argument("--db-url", help="a PostgreSQL server's URL (else a throwaway one)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2],
                        help="the classrun runs after the sequential one (default: 1 2)")
    parser.add_argument("--correct", type=int, help="a class where this many students wrote "
                        "the reference, each in a spelling of their own, and the others "
                        "the end-to-end test's defects (default: the mixed class above)")
    parser.add_argument("--gpus", type=int, help="classrun's --gpus: GPUs Ray may use here "
                        "(on a machine without one, logical GPUs: the trainings go through "
                        "Ray tasks with the models' shares and run on the CPU)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cnn-class-") as scratch:
        course, expected = scratch_course(Path(scratch) / "built", args.students,
                                          args.correct)
        runs = {"sequential": sequential(fresh_copy(course, Path(scratch) / "sequential"))}
        print("sequential:", f"{runs['sequential']['wall_seconds']:.0f} s", flush=True)
        with postgres(args.db_url) as create:
            for workers in args.workers:
                copy_ = fresh_copy(course, Path(scratch) / f"workers{workers}")
                runs[f"classrun, {workers} worker{'s' * (workers > 1)}"] = run = parallel(
                    copy_, create(f"class_benchmark_{workers}"), workers, args.gpus)
                print(f"{workers} worker(s):", f"{run['wall_seconds']:.0f} s", flush=True)
    text = report(runs, expected)
    (args.out / "results.json").write_text(json.dumps(
        {"students": args.students, "correct": args.correct, "gpus": args.gpus,
         "machine": os.uname().nodename,
         "cpus": os.cpu_count(), "profile": os.environ["CNN_COURSE_PROFILE"],
         "expected": expected, "runs": runs}, indent=1))
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
