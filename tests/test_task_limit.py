"""The bound on how many tasks a sandbox runs at once (cnn_grader/task_limit.py): every way
of starting processes or threads stops at the limit, as root and as any other user."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from cnn_grader import sandbox, task_limit
from cnn_grader.sandbox import NO_SANDBOX_ENV, Limits, run_sandboxed
from conftest import require

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
LIMIT = 40
WANTED = 120  # three times the limit: a spawner that gets them all was not bounded
SLEEP = "876.543"  # an unusual duration, to find these sleeps in /proc

# Starts WANTED tasks of one kind (argv[1]) that stay alive, and says how many it held
# when it was refused, or that it got them all.
SPAWNER = f"""
import os, subprocess, sys, threading, time
kind, held = sys.argv[1], 0
try:
    while held < {WANTED}:
        if kind == "fork":
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
        elif kind == "thread":
            threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        elif kind == "subprocess":
            subprocess.Popen(["sleep", "30"])
        held += 1
    print("held all", held, flush=True)
except (OSError, RuntimeError) as error:
    print("refused after", held, type(error).__name__, flush=True)
os._exit(0)
"""
KINDS = ("fork", "thread", "subprocess")
# Every process keeps starting more, and takes a refused fork in its stride.
BOMB = """
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.05)
"""


pytestmark = pytest.mark.usefixtures("sandbox_on")


def spawn(kind: str, **limits) -> str:
    outcome = run_sandboxed([SYSTEM_PYTHON, "-c", SPAWNER, kind],
                            limits=Limits(processes=LIMIT, wall_seconds=60, **limits))
    assert outcome.returncode == 0, outcome.output
    return outcome.output


def held_when_refused(output: str) -> int:
    assert "refused after" in output, output
    return int(output.split("refused after", 1)[1].split()[0])


@pytest.mark.parametrize("kind", KINDS)
def test_every_way_of_starting_tasks_stops_at_the_limit(kind):
    held = held_when_refused(spawn(kind))
    assert LIMIT - 10 <= held < LIMIT  # bwrap and the spawner itself count too


@pytest.mark.parametrize("kind", ["fork", "thread"])
def test_as_root_the_cgroup_alone_holds(kind, monkeypatch):
    """RLIMIT_NPROC set inside the sandbox is left out: the pids cgroup still bounds root."""
    if os.geteuid() != 0:
        pytest.skip("grading as root is what this checks; the suite runs as another user")
    assert task_limit.pids_cgroup_base() is not None, "root needs a pids cgroup (problem())"
    monkeypatch.setattr(task_limit, "limited", lambda argv, max_tasks: argv)
    assert LIMIT - 10 <= held_when_refused(spawn(kind)) < LIMIT


def test_as_root_rlimit_alone_would_not_hold(monkeypatch):
    """Why the cgroup is needed: without it, RLIMIT_NPROC lets root start them all."""
    if os.geteuid() != 0:
        pytest.skip("RLIMIT_NPROC binds every user but root")
    monkeypatch.setattr(task_limit, "task_group", lambda max_tasks: None)
    assert f"held all {WANTED}" in spawn("fork")


def test_a_user_that_is_not_root_is_bounded_without_a_cgroup():
    """As nobody (no pids cgroup can be made), RLIMIT_NPROC inside the user namespace bounds
    the sandbox, and counts only its tasks, not the user's others."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    home = Path(tempfile.mkdtemp(prefix="cnn-nobody-"))  # pytest's tmp_path is root's only
    others = [subprocess.Popen([*as_nobody, "sleep", SLEEP]) for _ in range(5)]
    try:
        home.chmod(0o755)
        (home / "cnn_grader").mkdir(mode=0o755)
        for name in ("__init__.py", "sandbox.py", "task_limit.py"):
            shutil.copy(REPO / "cnn_grader" / name, home / "cnn_grader" / name)
        script = (f"from cnn_grader import sandbox, task_limit\n"
                  f"assert task_limit.task_group(10) is None\n"
                  f"print(sandbox.run_sandboxed([{SYSTEM_PYTHON!r}, '-c', {SPAWNER!r}, 'fork'],"
                  f" limits=sandbox.Limits(processes={LIMIT}, wall_seconds=60)).output)\n")
        result = subprocess.run([*as_nobody, SYSTEM_PYTHON, "-c", script], cwd=home,
                                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(home)},
                                capture_output=True, text=True, timeout=120)
    finally:
        for other in others:
            other.kill()
            other.wait()
        shutil.rmtree(home)
    assert result.returncode == 0, result.stderr
    assert LIMIT - 10 <= held_when_refused(result.stdout) < LIMIT


def test_a_fork_bomb_stays_within_the_limit_and_leaves_nothing(monkeypatch):
    """An unbounded fork bomb never has more than LIMIT processes in its group, runs
    until the wall-clock limit, and nothing of it outlives the sandbox."""
    groups: list[task_limit.TaskGroup] = []
    make_group = task_limit.task_group

    def recorded(max_tasks: int):
        groups.append(make_group(max_tasks))
        return groups[-1]

    monkeypatch.setattr(task_limit, "task_group", recorded)
    counts: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if groups and groups[0] is not None:
                counts.append(len(groups[0].pids()))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcome = run_sandboxed([SYSTEM_PYTHON, "-c", BOMB],
                                limits=Limits(processes=LIMIT, wall_seconds=5))
    finally:
        done.set()
        watcher.join()
    assert outcome.timed_out
    assert groups and groups[0] is not None
    assert max(counts) > LIMIT // 2  # the bomb ran into the limit
    assert max(counts) <= LIMIT
    assert not groups[0].path.exists()


def test_what_escapes_the_process_group_is_killed_with_the_group(monkeypatch):
    """Without bubblewrap (CNN_GRADER_NO_SANDBOX=1) a daemon in a session of its own
    outlives a kill of the process group; the task group still ends it."""
    if task_limit.pids_cgroup_base() is None:
        require("no pids cgroup can be made here: grade as root or delegate one")
    monkeypatch.setenv(NO_SANDBOX_ENV, "1")
    code = ("import os, subprocess\n"
            f"subprocess.Popen(['sleep', {SLEEP!r}], start_new_session=True,\n"
            "                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n")
    assert run_sandboxed([SYSTEM_PYTHON, "-c", code]).returncode == 0
    assert not sleeping()


def sleeping() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path("/proc", entry, "cmdline").read_bytes() == \
                    f"sleep\0{SLEEP}\0".encode():
                found.append(int(entry))
        except OSError:
            pass
    return found


def test_groups_of_killed_graders_are_removed_by_the_next(tmp_path):
    """A grader killed before it removed its group (SIGKILL) leaves it behind; the next
    group's making removes it, and never a group whose owner lives."""
    base = task_limit.pids_cgroup_base()
    if base is None:
        require("no pids cgroup can be made here: grade as root or delegate one")
    owner = subprocess.Popen([SYSTEM_PYTHON, "-c", (
        "from cnn_grader import task_limit\n"
        "group = task_limit.task_group(10)\n"
        "print(group.path, flush=True)\n"
        "import time; time.sleep(60)")], stdout=subprocess.PIPE, text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    left = Path(owner.stdout.readline().strip())
    living = task_limit.task_group(10)
    try:
        assert left.is_dir() and living is not None  # its owner still runs: kept
        owner.kill()
        owner.wait()
        assert left.is_dir()  # nobody removed it
        task_limit.task_group(10).remove()
        assert not left.exists()
        assert living.path.is_dir()  # this process's own group stays
    finally:
        owner.stdout.close()
        living.remove()


def test_root_without_a_pids_cgroup_is_refused(monkeypatch):
    monkeypatch.setattr(task_limit, "pids_cgroup_base", lambda: None)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    message = sandbox.sandbox_problem()
    assert message is not None and "root" in message and "pids cgroup" in message
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert sandbox.sandbox_problem() is None


def test_cgroup_mounts_are_read_from_mountinfo():
    """A cgroup v1 pids hierarchy mounted at a path with a space, in a container whose
    cgroup is below the mount's root; other controllers' hierarchies are left out."""
    mountinfo = (
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "40 31 0:37 /docker /sys/fs/my\\040pids rw,relatime shared:5 - cgroup cgroup rw,pids\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "42 31 0:39 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
    assert task_limit.cgroup_mounts(mountinfo) == [
        ("/sys/fs/my pids", "/docker", 1), ("/sys/fs/cgroup/unified", "/", 2)]
