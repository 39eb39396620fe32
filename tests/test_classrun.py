"""Grading a class on Ray (cnn_grader/classrun.py): faults at class scale, with a stand-in
for nbgrader (tests/fakes/fake_autograde.py) so that each case takes seconds; the real
nbgrader is compared with sequential grading in test_grading_end_to_end.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from cnn_grader import classrun
from cnn_grader.environment import venv_first
from cnn_grader.classrun import ClassRun, Outcome
from waiting import dead, wait_for

ROOT = Path(__file__).resolve().parent.parent
FAKES = ROOT / "tests" / "fakes"  # fake_autograde.py: the stand-in for nbgrader
ASSIGNMENT = classrun.ASSIGNMENT
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def make_course(folder: Path, plans: dict[str, str], url: str | None = None) -> Path:
    """A course folder whose students' grading is planned (see fake_autograde.py)."""
    (folder / "plan").mkdir(parents=True)
    (folder / "nbgrader_config.py").write_text("# the stand-in nbgrader reads nothing here\n")
    for student, plan in plans.items():
        submission = folder / "submitted" / student / ASSIGNMENT
        submission.mkdir(parents=True)
        (submission / f"{ASSIGNMENT}.ipynb").write_text(f'{{"student": "{student}"}}')
        (folder / "plan" / student).write_text(plan)
    with Gradebook(url or f"sqlite:///{folder / 'gradebook.db'}") as gradebook:
        gradebook.update_or_create_assignment(ASSIGNMENT)
    return folder


@pytest.fixture(autouse=True)
def venv_first_on_path(monkeypatch):
    """nbgrader creates a gradebook with the venv's ``alembic``, from PATH."""
    monkeypatch.setenv("PATH", venv_first(os.environ["PATH"]))


@pytest.fixture
def fake_nbgrader(monkeypatch):
    monkeypatch.setenv("CNN_GRADER_AUTOGRADE_ENTRY", "fake_autograde:main")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(FAKES)]))
    monkeypatch.delenv("NBGRADER_DB_URL", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def graded_record(course: Path) -> list[str]:
    path = course / "graded.txt"
    return sorted(path.read_text().split()) if path.exists() else []


# --- without Ray -------------------------------------------------------------------------

def test_the_autograde_info_line_is_read_with_every_phase():
    # the line GradeOutsideKernel logs (cnn_grader/course_preprocessors.py; the real one
    # is read in test_grading_end_to_end.py); kills a pattern that loses a phase or count
    line = ("[AutogradeApp | INFO] graded with profile cpu: kernel 13.0 s and description "
            "11.1 s (side by side), hidden checks 38.1 s; 9 of 10 parts passed; training: "
            "2 cached, 1 trained in 21.5 s")
    found = classrun.PHASES.search(line)
    assert (found["profile"], found["kernel"], found["description"], found["checks"],
            found["cached"], found["trained"], found["training"]) == (
        "cpu", "13.0", "11.1", "38.1", "2", "1", "21.5")
    older = classrun.PHASES.search(line.replace(" in 21.5 s", ""))  # a log of before
    assert (older["trained"], older["training"]) == ("1", None)


def test_the_reason_names_nbgraders_error_lines_and_how_it_ended():
    text = "[AutogradeApp | INFO] start\n[AutogradeApp | ERROR] grader crashed: KeyError\n"
    assert classrun.reason_from_log(text, 1) == (
        "nbgrader autograde failed (exit status 1): [AutogradeApp | ERROR] grader crashed: "
        "KeyError")
    assert "killed by signal 9" in classrun.reason_from_log("", -9)


def test_a_marker_counts_only_for_the_submission_it_was_written_for(tmp_path):
    course = make_course(tmp_path / "course", {"ada": "ok"})
    assert not classrun.already_graded(course, ASSIGNMENT, "ada")
    path = classrun.marker(course, ASSIGNMENT, "ada")
    assert "autograded" not in path.parts  # its files reach the student's feedback
    path.parent.mkdir(parents=True)
    path.write_text(classrun.submission_stamp(course, ASSIGNMENT, "ada"))
    assert classrun.already_graded(course, ASSIGNMENT, "ada")
    # a resubmission (another notebook) is graded again
    (course / "submitted" / "ada" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").write_text("{}")
    assert not classrun.already_graded(course, ASSIGNMENT, "ada")


def test_students_share_this_machines_cores_and_keep_rays_one_thread_on_a_cluster(
        monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert [classrun.torch_threads(None, n)["OMP_NUM_THREADS"] for n in (1, 2, 3, 40)] == [
        "16", "8", "5", "1"]
    assert classrun.torch_threads("ray://head:10001", 2) == {}
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert classrun.torch_threads(None, 2) == {}


def test_every_student_of_a_run_is_graded_with_one_profile(monkeypatch):
    # kills: each node choosing by its own device (a student's task holds no GPU, so a
    # node without one would grade with cpu while the others use full), the
    # instructor's CNN_COURSE_PROFILE overridden
    monkeypatch.delenv(classrun.PROFILE_ENV, raising=False)
    assert classrun.class_profile(has_gpu=True) == "full"
    assert classrun.class_profile(has_gpu=False) == "cpu"  # this machine has no GPU
    monkeypatch.setenv(classrun.PROFILE_ENV, "ci")
    assert classrun.class_profile(has_gpu=True) == "ci"
    monkeypatch.setenv(classrun.PROFILE_ENV, "fast")
    with pytest.raises(ValueError, match="unknown run profile 'fast'"):
        classrun.class_profile(has_gpu=True)


def test_the_machine_checks_run_on_every_node_that_can_grade_a_student():
    # kills: a node left out; a head node without CPUs (it grades nobody, and on a GPU
    # cluster often has no GPU) checked, which would refuse the whole run; the run's
    # profile not passed to the nodes
    from types import SimpleNamespace

    worker, head, dead = "a" * 56, "b" * 56, "c" * 56
    nodes = [{"NodeID": worker, "Alive": True, "Resources": {"CPU": 16.0, "GPU": 1.0}},
             {"NodeID": head, "Alive": True, "Resources": {"memory": 1e9}},
             {"NodeID": dead, "Alive": False, "Resources": {"CPU": 8.0}}]

    class Remote:
        def options(self, scheduling_strategy, **_resources):
            self.node = scheduling_strategy.node_id
            return self

        def remote(self, require_gpu, profile):
            return self.node[0], [f"profile {profile}, GPU required: {require_gpu}"]
    fake = SimpleNamespace(nodes=lambda: nodes, remote=lambda _function: Remote(),
                           get=list)
    assert classrun.check_nodes(fake, True, "full") == [
        "a: profile full, GPU required: True"]


def test_ctrl_c_during_the_run_is_noted_not_raised_and_the_handler_is_put_back():
    # kills: Ctrl-C left to raise KeyboardInterrupt inside Ray's waits (Ray can swallow
    # it, and the run then waits for every student), the instructor's handler not restored
    before = signal.getsignal(signal.SIGINT)
    try:
        with classrun.ctrl_c_noted() as pressed:
            assert not pressed.is_set()
            os.kill(os.getpid(), signal.SIGINT)
            assert pressed.wait(5)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C raised KeyboardInterrupt during the run")
    assert signal.getsignal(signal.SIGINT) is before


def test_sqlite_with_several_workers_and_unknown_students_are_refused(tmp_path, fake_nbgrader):
    course = make_course(tmp_path / "course", {"ada": "ok"})
    with pytest.raises(SystemExit, match="PostgreSQL"):
        classrun.grade_class(course, workers=2, progress=False)
    with pytest.raises(SystemExit, match="no submission of assignment_cnn for: bob"):
        classrun.grade_class(course, students=["bob"], progress=False)
    with pytest.raises(SystemExit, match="at least 1"):
        classrun.grade_class(course, workers=0, progress=False)


def test_handed_in_links_are_moved_aside_before_students_are_listed(tmp_path, fake_nbgrader,
                                                                    capsys):
    """A student's whole folder as a link to a neighbour's, and a FIFO beside a notebook:
    moved to refused/ before the run lists (and hashes) anyone's submission."""
    course = make_course(tmp_path / "course", {"ada": "ok", "bob": "ok"})
    (course / "submitted" / "eve").symlink_to(course / "submitted" / "ada")
    os.mkfifo(course / "submitted" / "bob" / ASSIGNMENT / "notes.txt")
    with pytest.raises(SystemExit, match="no submission of assignment_cnn for: nobody"):
        classrun.grade_class(course, students=["nobody"], progress=False)
    assert (course / "refused" / "eve").is_symlink()
    assert (course / "refused" / "bob" / ASSIGNMENT / "notes.txt").is_fifo()
    assert classrun.submitted(course, ASSIGNMENT) == ["ada", "bob"]
    err = capsys.readouterr().err
    assert "eve is a symbolic link to" in err and "notes.txt is a FIFO" in err, err


def test_a_task_past_its_time_is_stopped_whole_and_reported(tmp_path, fake_nbgrader):
    course = make_course(tmp_path / "course", {"ada": "sleep", "bob": "ok"})
    entry = classrun.autograde_entry()
    start = time.monotonic()
    stuck = classrun.grade_student(str(course), ASSIGNMENT, "ada", entry, {}, task_seconds=3)
    assert time.monotonic() - start < 3 + 10
    assert not stuck.graded
    assert stuck.reason.startswith("grading was stopped after 3 s"), stuck.reason
    sleeper = int((course / "pids" / "ada").read_text())
    wait_for(lambda: dead(sleeper), 30, "the stopped student's process to end")
    assert not classrun.marker(course, ASSIGNMENT, "ada").exists()
    done = classrun.grade_student(str(course), ASSIGNMENT, "bob", entry, {}, task_seconds=60)
    assert done.graded, done.reason  # the next student in the same worker is graded


def test_the_task_time_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        classrun.main(["--task-seconds", "0"])
    assert "--task-seconds must be positive" in capsys.readouterr().err


def test_the_table_and_csv_keep_every_student(tmp_path):
    first = ClassRun([Outcome("ada", True, points=80, kernel=10, description=9, checks=30,
                              cached=1, trained=1, training=21.5),
                      Outcome("bob", False, reason="nbgrader autograde failed (exit status 1)")],
                     wall_seconds=42)
    text = classrun.table(first)
    assert "UNGRADED: nbgrader autograde failed (exit status 1)" in text
    assert "1 graded, 1 ungraded" in text and "1 cached, 1 run in 22 s" in text
    assert "trainings: 1 of 2 from the cache, 22 s spent training" in text
    report = tmp_path / "classrun.csv"
    classrun.write_csv(first, report)
    classrun.write_csv(ClassRun([Outcome("bob", True, points=55)]), report)  # the rerun
    rows = report.read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("ada,True,,80") and rows[2].startswith("bob,True")
    older = "student,graded,points\ncyd,True,70\n"  # a table written before a column was added
    report.write_text(older)
    classrun.write_csv(first, report)
    assert [row.split(",")[:4] for row in report.read_text().splitlines()[1:]] == [
        ["ada", "True", "", "80"], ["bob", "False", "nbgrader autograde failed (exit status 1)",
                                    ""], ["cyd", "True", "", "70"]]


# --- on Ray ------------------------------------------------------------------------------
def test_on_a_gpu_cluster_the_checks_train_in_ray_tasks_with_the_models_share(
        tmp_path, fake_nbgrader, monkeypatch):
    """Ray with one (logical) GPU: the first student's checks send their training to a
    Ray task holding VGG16's share; the second student's, the same network, is answered
    from the cache in its own process, with no Ray task; without a GPU the training stays
    in the student's process."""
    # kills: the socket's environment not given to the nbgrader process, a cluster's GPUs
    # not noticed (or noticed where there are none), the answer's counters lost
    import pickle

    from cnn_grader import training_cache
    from test_training_cache import Tiny, small

    monkeypatch.setenv(training_cache.ENV, str(tmp_path / "cache"))
    course = make_course(tmp_path / "course", {"ada": "train", "bob": "train"})
    for student in ("ada", "bob"):
        (course / "plan" / f"{student}.graph").write_bytes(pickle.dumps(small(Tiny)))
    run = classrun.grade_class(course, gpus=1, progress=False)
    found = {o.student: o for o in run.outcomes}
    assert all(o.graded for o in found.values()), classrun.table(run)
    assert [(found[s].cached, found[s].trained) for s in ("ada", "bob")] == [(0, 1), (1, 0)]
    logs = {s: classrun.log_path(course, ASSIGNMENT, s).read_text() for s in ("ada", "bob")}
    assert "vgg16 trained in a Ray task holding 1 GPU" in logs["ada"], logs["ada"]
    assert "Ray task" not in logs["bob"], logs["bob"]

    monkeypatch.setenv(training_cache.ENV, str(tmp_path / "another-cache"))
    again = classrun.grade_class(course, students=["ada"], force=True, gpus=0, progress=False)
    assert again.outcomes[0].trained == 1, classrun.table(again)
    assert "Ray task" not in classrun.log_path(course, ASSIGNMENT, "ada").read_text()


def test_a_gpu_task_that_cannot_train_refuses_the_run_before_anyone_is_graded(
        tmp_path, fake_nbgrader, monkeypatch):
    # kills: the probe's refusal ignored (each student's checks would fail one after
    # another as grader errors, after their kernels had run)
    monkeypatch.setenv(classrun.PROFILE_ENV, "full")
    from cnn_grader import preflight

    monkeypatch.setattr(preflight, "refusal", lambda require_gpu: None)  # a machine...
    monkeypatch.setattr(classrun, "check_nodes", lambda *args: [])  # ...and nodes with CUDA
    course = make_course(tmp_path / "course", {"ada": "ok"})
    with pytest.raises(SystemExit, match="cannot train: the full grading profile needs a "
                                         "CUDA GPU; nobody was graded"):
        classrun.grade_class(course, gpus=1, progress=False)  # whose GPU tasks see none
    assert not classrun.log_path(course, ASSIGNMENT, "ada").exists()


def test_faults_at_class_scale(tmp_path, fake_nbgrader, postgres_url, monkeypatch):
    """Two workers, a PostgreSQL gradebook: a killed worker's student is retried and
    graded once, a grader failure is reported ungraded while the rest finish, and the
    next run grades only what is left."""
    monkeypatch.setenv("NBGRADER_DB_URL", postgres_url)
    plans = {"ada": "ok", "bob": "fail", "cyd": "kill-worker", "dee": "ok"}
    course = make_course(tmp_path / "course", plans, postgres_url)
    run = classrun.grade_class(course, workers=2, progress=False)
    outcomes = {o.student: o for o in run.outcomes}
    assert sorted(outcomes) == sorted(plans)
    graded = sorted(s for s, o in outcomes.items() if o.graded)
    assert graded == ["ada", "cyd", "dee"], classrun.table(run)
    assert outcomes["cyd"].attempts == 2 and outcomes["ada"].attempts == 1
    assert graded_record(course) == ["ada", "cyd", "dee"]  # each exactly once
    assert "grader crashed" in outcomes["bob"].reason and not outcomes["bob"].graded
    assert (outcomes["ada"].kernel, outcomes["ada"].cached, outcomes["ada"].training) == (
        1.5, 1, 4.5)
    with Gradebook(postgres_url) as gradebook:  # prepared before fan-out
        assert sorted(s.id for s in gradebook.students) == sorted(plans)

    (course / "plan" / "bob").write_text("ok")  # the instructor fixed what failed
    again = classrun.grade_class(course, workers=2, progress=False)
    assert [o.student for o in again.outcomes] == ["bob"] and again.outcomes[0].graded
    assert sorted(again.skipped) == ["ada", "cyd", "dee"]
    assert graded_record(course) == ["ada", "bob", "cyd", "dee"]


def test_ctrl_c_stops_the_run_and_leaves_nothing_behind(tmp_path):
    course = make_course(tmp_path / "course", {"ada": "sleep", "bob": "sleep", "cyd": "ok"})
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths
    env = {**os.environ, "CNN_GRADER_AUTOGRADE_ENTRY": "fake_autograde:main",
           "RAY_TMPDIR": ray_tmp, "PYTHONPATH": os.pathsep.join([str(ROOT), str(FAKES)])}
    env.pop("NBGRADER_DB_URL", None)
    env.pop("RAY_ADDRESS", None)
    command = subprocess.Popen([sys.executable, "-m", "cnn_grader.classrun", "--course",
                                str(course)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (course / "pids" / "ada").exists():
            assert command.poll() is None, command.stdout.read()
            assert time.monotonic() < deadline, "the first student never started"
            time.sleep(0.5)
        command.send_signal(signal.SIGINT)
        output, _ = command.communicate(timeout=120)
    finally:
        if command.poll() is None:
            command.kill()
    assert command.returncode == 130, output
    assert "Interrupted: run the same command again" in output
    for pid in ("ada", "ada.parent"):  # the student's process and its forkserver
        sleeper = int((course / "pids" / pid).read_text())
        wait_for(lambda: dead(sleeper), 30, f"{pid}'s process {sleeper} to end")
    wait_for(lambda: not ray_processes(ray_tmp), 60,
             "Ray's processes to end (left behind otherwise)")
    assert not (course / "pids" / "bob").exists()  # never started: one worker
    assert graded_record(course) == []


def ray_processes(ray_tmp: str) -> str:
    """The processes of the Ray instance whose temporary folder is ``ray_tmp``."""
    return subprocess.run(["pgrep", "-af", ray_tmp], capture_output=True, text=True).stdout
