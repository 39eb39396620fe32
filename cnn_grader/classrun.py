"""Grade a whole class at once: one Ray task per student, one gradebook, one table.

    .venv/bin/python -m cnn_grader.classrun --workers 8          # or: make grade WORKERS=8

Each task runs ``nbgrader autograde ASSIGNMENT --student S --force`` in the course
folder, exactly what an instructor would run by hand, so a student gets the grade that
sequential grading gives (the sandboxed kernel, the description and the hidden checks
all run inside it); its process is forked from one that imported nbgrader and torch
once per worker (cnn_grader/autograde_fork.py). Before the fan-out the machine checks
run on every node and the gradebook is prepared once (cnn_grader/gradebook.py). A
student whose grading ended gets a marker beside its log: a second
run grades only what is left (``--force`` grades everyone again). A Ray worker that
dies mid-submission is retried; a submission that makes nbgrader itself fail is
reported ungraded, with the reason from its log, and the others finish. Ctrl-C
cancels the tasks; each kills its nbgrader process group, so no kernel, sandbox or
worker is left behind.

On a cluster with GPUs a student's task holds no GPU; each training of the accuracy
part is a Ray task of its own with the model's GPU share, two AlexNets or one VGG16 per
GPU (cnn_grader/training_tasks.py).

With no configuration Ray starts on this machine (``ray.init()``); with ``RAY_ADDRESS``
(or ``--address``) it joins a cluster whose nodes share the checkout, its venv, the data
and the course folder (README.md, "Grading a class").
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from cnn_grader import autograde_fork, sandbox, training_tasks
from cnn_grader.environment import environment_set, gpu_required, venv_first
from cnn_grader.ray_nodes import run_on_each_node

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "grader"
PROFILE_ENV = "CNN_COURSE_PROFILE"  # cnn_course.runtime.PROFILE_ENV, without importing torch
ASSIGNMENT = "assignment_cnn"
RAY_START_TRIES = 3
RETRIES = 2  # a task whose Ray worker died is run again this many times
CANCEL_GRACE_SECONDS = 10.0
WAIT_SECONDS = 0.5  # how often the run looks for Ctrl-C while students are graded
# A student's task is killed past this, and the student reported ungraded with that reason.
# Within it: the submission's time budget (grader/nbgrader_config.py, TIME_BUDGET: 600 s
# for the kernel and the description), the hidden checks (the profile's trainings: 2 min
# on the cpu profile, README.md), and a wide grace for trainings queued for a GPU.
TASK_SECONDS = 3600.0
PHASES = re.compile(
    r"graded with profile (?P<profile>\w+): kernel (?P<kernel>[\d.]+|nan) s and description "
    r"(?P<description>[\d.]+) s .*?hidden checks (?P<checks>[\d.]+) s; (?P<passed>\d+) of "
    r"(?P<parts>\d+) parts passed(?:; training: (?P<cached>\d+) cached, (?P<trained>\d+) "
    r"trained(?: in (?P<training>[\d.]+) s)?)?")
ERROR_LINE = re.compile(r"\[\w+ \| (ERROR|CRITICAL)\]|^\w*Error: |^SystemExit")


@dataclass
class Outcome:
    """How one student's grading went (the table's row)."""

    student: str
    graded: bool
    reason: str = ""  # why the student is ungraded
    points: float | None = None
    profile: str = ""
    kernel: float = math.nan  # seconds, from the autograde log's INFO line
    description: float = math.nan
    checks: float = math.nan
    cached: int = 0  # trainings answered by the training cache
    trained: int = 0
    training: float = 0.0  # seconds spent training (within the checks)
    seconds: float = 0.0  # wall time of the whole task
    attempts: int = 1
    node: str = ""


@dataclass
class ClassRun:
    """The result of one run: every selected student's outcome, and what was skipped."""

    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already graded by an earlier run
    interrupted: bool = False
    wall_seconds: float = 0.0


def submitted(course: Path, assignment: str) -> list[str]:
    """The students with a submitted notebook folder, sorted."""
    folder = course / "submitted"
    return sorted(p.parent.name for p in folder.glob(f"*/{assignment}") if p.is_dir())


def submission_stamp(course: Path, assignment: str, student: str) -> str:
    """A hash of the submitted folder (names and bytes): what a marker says was graded."""
    digest = hashlib.sha256()
    folder = course / "submitted" / student / assignment
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def marker(course: Path, assignment: str, student: str) -> Path:
    """What a finished grading wrote, beside the student's log: never in the autograded
    folder, whose files reach the student's feedback."""
    return log_path(course, assignment, student).with_suffix(".graded")


def already_graded(course: Path, assignment: str, student: str) -> bool:
    """Whether an earlier run graded this very submission to the end."""
    path = marker(course, assignment, student)
    return path.is_file() and path.read_text().strip() == submission_stamp(
        course, assignment, student)


def log_path(course: Path, assignment: str, student: str) -> Path:
    return course / "logs" / assignment / f"{student}.log"


def autograde_entry() -> str:
    """The function each student's process runs as ``nbgrader``: nbgrader's own entry
    point, or the ``module:function`` that ``CNN_GRADER_AUTOGRADE_ENTRY`` names (the
    tests' stand-in)."""
    return os.environ.get("CNN_GRADER_AUTOGRADE_ENTRY") or autograde_fork.NBGRADER


def autograde_argv(assignment: str, student: str) -> list[str]:
    """The command line of one student's grading."""
    return ["nbgrader", "autograde", assignment, "--student", student, "--force"]


def attempts_path(course: Path, assignment: str, student: str) -> Path:
    return course / "logs" / assignment / f"{student}.attempts"


def reason_from_log(text: str, returncode: int) -> str:
    """The lines that say why nbgrader failed, short enough for a table."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.search(line)]
    picked = (errors or lines)[-3:]
    reason = " / ".join(picked)[-400:] or "no output"
    how = (f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}")
    return f"nbgrader autograde failed ({how}): {reason}"


def grade_student(course: str, assignment: str, student: str, entry: str,
                  env: dict[str, str], training_device: str | None = None,
                  task_seconds: float = TASK_SECONDS) -> Outcome:
    """Grade one student in a process of its own and read the phases from its log.

    The process is forked from a warm one (cnn_grader/autograde_fork.py), in a session of
    its own, and dies with its parent; its whole group is killed when this function is
    interrupted or after ``task_seconds``, so a cancelled, killed or stuck task leaves no
    kernel or sandbox behind. With a ``training_device`` its checks train in Ray tasks
    with GPU shares, on that device (cnn_grader/training_tasks.py)."""
    folder = Path(course)
    log = log_path(folder, assignment, student)
    log.parent.mkdir(parents=True, exist_ok=True)
    marker(folder, assignment, student).unlink(missing_ok=True)
    tries = attempts_path(folder, assignment, student)
    with open(tries, "a") as handle:
        handle.write(f"{os.uname().nodename} {os.getpid()}\n")
    log.write_text("")
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if training_device:
            import ray

            env = {**env, **stack.enter_context(training_tasks.serve(ray, training_device))}
        process = autograde_fork.start(entry, autograde_argv(assignment, student),
                                       str(folder), {**os.environ, **env}, str(log))
        try:
            process.join(timeout=task_seconds)
            overran = process.exitcode is None
        finally:
            _kill_group(process)
    returncode = process.exitcode
    text = log.read_text(errors="replace")
    outcome = Outcome(student, graded=False, seconds=time.perf_counter() - start,
                      node=os.uname().nodename, attempts=_count_lines(tries))
    if overran:
        outcome.reason = (f"grading was stopped after {task_seconds:.0f} s, the longest a "
                          f"student's task may run (the log says how far it got: {log})")
        return outcome
    found = PHASES.search(text)
    if returncode != 0 or not found:
        outcome.reason = (reason_from_log(text, returncode) if returncode != 0 else
                          "nbgrader autograde ended without grading the notebook: "
                          + reason_from_log(text, returncode).split(": ", 1)[1])
        return outcome
    outcome.graded = True
    outcome.profile = found["profile"]
    for name in ("kernel", "description", "checks"):
        setattr(outcome, name, float(found[name]))
    outcome.cached, outcome.trained = int(found["cached"] or 0), int(found["trained"] or 0)
    outcome.training = float(found["training"] or 0.0)
    done = marker(folder, assignment, student)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(submission_stamp(folder, assignment, student))
    return outcome


def _count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _kill_group(process) -> None:
    """SIGTERM to the student's whole process group, then SIGKILL to what is left of it."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    process.join(timeout=3.0)
    sandbox.kill_group(process.pid)


def _node_problems(require_gpu: bool, profile: str) -> tuple[str, list[str]]:
    from cnn_grader.preflight import problems

    with environment_set({PROFILE_ENV: profile}):
        return os.uname().nodename, problems(require_gpu)


def check_nodes(ray, require_gpu: bool, profile: str) -> list[str]:
    """The machine checks (cnn_grader/preflight.py) for ``profile`` on every alive Ray node
    that can run a student's task (a CPU; a head node started with ``--num-cpus=0``
    grades nobody and is not checked)."""
    answers = run_on_each_node(ray, _node_problems, (require_gpu, profile), "CPU", 1,
                               num_cpus=0)
    return [f"{name}: {problem}" for name, found in answers for problem in found]


def start_ray(address: str | None, workers: int, gpus: int | None = None):
    """Join ``address`` (or RAY_ADDRESS), else start Ray here with ``workers`` CPUs and
    ``gpus`` GPUs (None: those Ray finds), in ``RAY_START_TRIES`` attempts: a busy
    machine can miss Ray's start-up deadline."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:
        site = str(Path(__file__).resolve().parent / "ray_site")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (site, os.environ.get("PYTHONPATH", "")) if p)
    import ray

    where = {"address": address} if address else {"num_cpus": workers}
    if gpus is not None and not address:
        where["num_gpus"] = gpus
    tries = 1 if address else RAY_START_TRIES
    for attempt in range(1, tries + 1):
        try:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                     **where)
            return ray
        except Exception as error:  # noqa: BLE001 (Ray raises a bare Exception on time-outs)
            ray.shutdown()
            if attempt == tries:
                raise SystemExit(f"Ray did not start: {error}") from error


def fan_out(ray, course: Path, assignment: str, students: list[str], workers: int,
            env: dict[str, str], training_device: str | None = None, progress: bool = True,
            task_seconds: float = TASK_SECONDS) -> tuple[list[Outcome], bool]:
    """Grade ``students`` with at most ``workers`` tasks in flight; returns the outcomes
    and whether Ctrl-C interrupted the run. A task whose worker died is retried
    (``RETRIES``); its outcome counts its attempts. A student's task asks for no GPU:
    with a ``training_device`` its trainings do, each in a task of its own."""
    from tqdm.auto import tqdm

    # max_calls=0: a worker grades student after student, so its warm forkserver is reused.
    task = ray.remote(num_cpus=1, num_gpus=0, max_retries=RETRIES, max_calls=0,
                      retry_exceptions=False)(grade_student)
    entry = autograde_entry()
    waiting, running, outcomes = list(students), {}, []
    bar = tqdm(total=len(students), unit="student", disable=not progress,
               desc=f"grading {assignment}")
    interrupted = False
    try:
        with ctrl_c_noted() as pressed:
            while (waiting or running) and not pressed.is_set():
                while waiting and len(running) < workers:
                    student = waiting.pop(0)
                    attempts_path(course, assignment, student).unlink(missing_ok=True)
                    running[task.remote(str(course), assignment, student, entry, env,
                                        training_device, task_seconds)] = student
                done, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_SECONDS)
                for ref in done:
                    student = running.pop(ref)
                    outcomes.append(_result(ray, ref, student, course, assignment))
                    bar.set_postfix_str(student)
                    bar.update(1)
            interrupted = pressed.is_set()
    except KeyboardInterrupt:  # pressed before the handler was in place
        interrupted = True
    finally:
        bar.close()
    if interrupted:
        _cancel(ray, list(running))
    return outcomes, interrupted


@contextlib.contextmanager
def ctrl_c_noted() -> Iterator[threading.Event]:
    """While the block runs, Ctrl-C (SIGINT) sets the yielded event instead of raising
    KeyboardInterrupt, which Ray can swallow when it lands in its own callbacks (the run
    then waited for every student); the caller checks the event between waits."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: pressed.set())
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def _result(ray, ref, student: str, course: Path, assignment: str) -> Outcome:
    from ray.exceptions import RayError, WorkerCrashedError

    try:
        outcome = ray.get(ref)
    except WorkerCrashedError:
        return Outcome(student, graded=False,
                       attempts=_count_lines(attempts_path(course, assignment, student)),
                       reason=f"the Ray worker grading this student died {RETRIES + 1} "
                              f"times (last log: {log_path(course, assignment, student)})")
    except RayError as error:  # the task itself raised: the last line says what
        what = training_tasks.ray_error_line(error) or "?"
        return Outcome(student, graded=False, reason=f"the grading task failed: {what[:300]}")
    return outcome


def _cancel(ray, refs: list) -> None:
    """Cancel the tasks (each kills its nbgrader group), then force what is still there."""
    for ref in refs:
        ray.cancel(ref, force=False)
    deadline = time.monotonic() + CANCEL_GRACE_SECONDS
    pending = list(refs)
    while pending and time.monotonic() < deadline:
        _done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
    for ref in pending:
        ray.cancel(ref, force=True)


def table(run: ClassRun) -> str:
    """The instructor's summary: one row per student, then the totals."""
    head = ("student", "points", "kernel s", "descr. s", "checks s", "training", "tries",
            "status")
    rows = []
    for o in sorted(run.outcomes, key=lambda o: (o.graded, o.student)):
        points = "" if o.points is None else f"{o.points:g}"
        phases = [f"{v:.0f}" if not math.isnan(v) else "" for v in (o.kernel, o.description,
                                                                     o.checks)]
        training = (f"{o.cached} cached, {o.trained} run"
                    + (f" in {o.training:.0f} s" if o.trained else "")) if o.graded else ""
        rows.append((o.student, points, *phases, training, str(o.attempts),
                     "graded" if o.graded else f"UNGRADED: {o.reason}"))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1]
             for r in [head, *rows]]
    graded = [o for o in run.outcomes if o.graded]
    cached = sum(o.cached for o in graded)
    trainings = cached + sum(o.trained for o in graded)
    lines.append("")
    lines.append(
        f"{len(graded)} graded, {len(run.outcomes) - len(graded)} ungraded, "
        f"{len(run.skipped)} already graded before (skipped) in {run.wall_seconds:.0f} s; "
        f"phases summed over students: kernel {_sum(graded, 'kernel'):.0f} s, description "
        f"{_sum(graded, 'description'):.0f} s, checks {_sum(graded, 'checks'):.0f} s; "
        f"trainings: {cached} of {trainings} from the cache, {_sum(graded, 'training'):.0f} s "
        f"spent training")
    if run.interrupted:
        lines.append("Interrupted: run the same command again to grade the students left.")
    return "\n".join(lines)


def _sum(outcomes: list[Outcome], name: str) -> float:
    return sum(v for o in outcomes if not math.isnan(v := getattr(o, name)))


def write_csv(run: ClassRun, path: Path) -> None:
    """Every student's latest row: this run's outcomes replace earlier runs' rows (a row
    of an older table lacks the columns added since: they stay empty)."""
    names = [f.name for f in fields(Outcome)]
    rows = {}
    if path.is_file():
        with open(path, newline="") as handle:
            rows = {row["student"]: row for row in csv.DictReader(handle)
                    if "student" in row and set(row) <= set(names)}
    rows.update({o.student: asdict(o) for o in run.outcomes})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, names)
        writer.writeheader()
        writer.writerows(rows[student] for student in sorted(rows))


def class_profile(has_gpu: bool) -> str:
    """The one profile every student of the run is graded with: ``CNN_COURSE_PROFILE``,
    else ``full`` on a cluster with GPUs, else this machine's choice. A student's task
    holds no GPU, so a node's own choice could differ from the others'."""
    from cnn_course import get_profile

    chosen = os.environ.get(PROFILE_ENV, "").strip()
    return get_profile(chosen or ("full" if has_gpu else None)).name


def torch_threads(address: str | None, workers: int) -> dict[str, str]:
    """On this machine, each student's torch uses its share of the cores (Ray would give
    it one thread: one worker on 2 cores would train at half the speed of sequential
    grading). On a cluster Ray's one thread per task, one task per core, is kept."""
    if address or os.environ.get("RAY_ADDRESS"):
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}


def grade_class(course: Path = COURSE, assignment: str = ASSIGNMENT, workers: int = 1,
                students: Sequence[str] | None = None, force: bool = False,
                address: str | None = None, gpus: int | None = None,
                progress: bool = True, task_seconds: float = TASK_SECONDS) -> ClassRun:
    """Grade every submitted student of ``assignment`` (or ``students``) left to grade.

    Where the Ray cluster has GPUs (``gpus``: how many Ray manages on this machine,
    None: those it finds), the accuracy part's trainings run as Ray tasks with each
    model's GPU share (cnn_grader/training_tasks.py)."""
    from cnn_grader import gradebook
    from cnn_grader.handed_in import refusal_line, set_aside_non_regular
    from cnn_grader.preflight import refusal
    from cnn_grader.unreadable import set_aside_unreadable

    if workers < 1:
        raise SystemExit(f"--workers must be at least 1, not {workers}")
    course = course.resolve()
    if not (course / "nbgrader_config.py").is_file():
        raise SystemExit(f"{course} is not an nbgrader course folder (no nbgrader_config.py)")
    url = gradebook.gradebook_url(course)
    problem = gradebook.concurrency_problem(url, workers)
    if problem:
        raise SystemExit(problem)
    for moved in set_aside_non_regular(course, assignment):  # before anything reads them
        print(refusal_line(*moved), file=sys.stderr)
    everyone = submitted(course, assignment)
    chosen = list(students) if students else everyone
    unknown = sorted(set(chosen) - set(everyone))
    if unknown:
        raise SystemExit(f"no submission of {assignment} for: {', '.join(unknown)} "
                         f"(looked in {course / 'submitted'})")
    require_gpu = gpu_required()
    message = refusal(require_gpu)
    if message:
        raise SystemExit(message)
    for path in set_aside_unreadable(course, assignment):  # once, not in racing workers
        print(f"{path} is not a readable notebook: kept as {path.name}.unreadable, a "
              "stand-in that says so is graded", file=sys.stderr)
    gradebook.prepare(url, course, assignment, everyone)
    run = ClassRun()
    todo = [s for s in chosen if force or not already_graded(course, assignment, s)]
    run.skipped = [s for s in chosen if s not in todo]
    if not todo:
        return run
    start = time.perf_counter()
    ray = start_ray(address, workers, gpus)
    try:
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        profile = class_profile(has_gpu)
        problems = check_nodes(ray, require_gpu, profile)
        if problems:
            raise SystemExit("a Ray node cannot grade yet, nobody was graded:\n  - "
                             + "\n  - ".join(problems))
        try:
            device = training_tasks.probe_device(ray, profile, require_gpu) if has_gpu else None
        except RuntimeError as error:
            raise SystemExit(f"{error}; nobody was graded") from None
        env = {"NBGRADER_DB_URL": url, PROFILE_ENV: profile,
               "PATH": venv_first(os.environ.get("PATH", "")),
               **torch_threads(address, workers)}
        run.outcomes, run.interrupted = fan_out(ray, course, assignment, todo, workers, env,
                                                training_device=device,
                                                progress=progress, task_seconds=task_seconds)
    finally:
        ray.shutdown()
    run.wall_seconds = time.perf_counter() - start
    totals = gradebook.points(url, assignment)
    for outcome in run.outcomes:
        outcome.points = totals.get(outcome.student) if outcome.graded else None
    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=COURSE, help="the nbgrader course folder")
    parser.add_argument("--assignment", default=ASSIGNMENT)
    parser.add_argument("--workers", type=int, default=1,
                        help="students graded at once (more than 1 needs PostgreSQL)")
    parser.add_argument("--students", nargs="*", help="only these students")
    parser.add_argument("--force", action="store_true",
                        help="grade again students an earlier run graded")
    parser.add_argument("--address", help="a Ray cluster to join (default: RAY_ADDRESS, "
                                          "else Ray on this machine)")
    parser.add_argument("--gpus", type=int, default=None,
                        help="GPUs Ray uses on this machine (default: those it finds); "
                             "with GPUs, trainings run as Ray tasks with each model's share")
    parser.add_argument("--task-seconds", type=float, default=TASK_SECONDS,
                        help="a student's grading is stopped past this, and the student "
                             f"reported ungraded (default: {TASK_SECONDS:.0f})")
    args = parser.parse_args(argv)
    if args.task_seconds <= 0:
        parser.error(f"--task-seconds must be positive, not {args.task_seconds:g}")
    run = grade_class(args.course, args.assignment, args.workers, args.students, args.force,
                      args.address, args.gpus, task_seconds=args.task_seconds)
    print(table(run))
    report = args.course.resolve() / "logs" / args.assignment / "classrun.csv"
    write_csv(run, report)
    print(f"Table written to {report}; each student's nbgrader log is beside it.")
    if run.interrupted:
        return 130
    return 0 if all(o.graded for o in run.outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
