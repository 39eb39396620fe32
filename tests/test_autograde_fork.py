"""Each student's process forked from a warm one (cnn_grader/autograde_fork.py) behaves like
the command it replaces: its folder, arguments, environment, log, exit status and session,
and it dies with its parent."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from cnn_grader import autograde_fork

FAKES = Path(__file__).resolve().parent / "fakes"
PROBE = "fork_probe:main"  # tests/fakes/fork_probe.py


@pytest.fixture(autouse=True, scope="module")
def probe_preloaded():
    """The forkserver (started by this module's first test) finds the probe on PYTHONPATH
    and preloads it, as it preloads nbgrader and torch from site-packages."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(
            [str(FAKES), *filter(None, [os.environ.get("PYTHONPATH")])]))
        yield


def run(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    log = tmp_path / "log"
    process = autograde_fork.start(PROBE, ["nbgrader", *argv], str(tmp_path),
                                   env or {"PATH": os.environ["PATH"]}, str(log))
    process.join(timeout=60)
    assert process.exitcode is not None, "the probe did not end"
    return process.exitcode, log.read_text()


def test_the_fork_runs_in_the_folder_with_the_arguments_environment_and_log(tmp_path):
    status, log = run(tmp_path, "report", "x", env={"PROBE": "yes", "PATH": "/usr/bin"})
    assert status == 0
    assert (f"cwd={tmp_path} argv=['report', 'x'] probe=yes leader=True "
            f"environment=['PATH', 'PROBE'] threads=") in log
    assert "grader=[]" in log  # the course's configuration imports the course's copy
    assert "to stderr" in log


def test_the_environment_is_the_one_given_not_the_forkservers(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE", "from the parent")
    _status, log = run(tmp_path, "report", env={"PATH": "/usr/bin"})
    assert "probe=None" in log and "environment=['PATH']" in log


@pytest.mark.parametrize("threads", ["1", "2"])
def test_the_preloaded_torch_uses_the_students_thread_count(tmp_path, threads):
    _status, log = run(tmp_path, "report", env={"PATH": "/usr/bin", "OMP_NUM_THREADS": threads})
    assert f"threads={threads} " in log


@pytest.mark.parametrize("argv, expected", [(("exit", "3"), 3), (("exit", "0"), 0),
                                            (("raise",), 1)])
def test_the_exit_status_is_the_entry_points(tmp_path, argv, expected):
    status, log = run(tmp_path, *argv)
    assert status == expected
    if argv[0] == "raise":
        assert "RuntimeError: the probe failed" in log


def test_a_killed_fork_reports_the_signal_and_dies_with_its_forkserver(tmp_path):
    first = autograde_fork.start(PROBE, ["nbgrader", "sleep"], str(tmp_path),
                                 {"PATH": os.environ["PATH"]}, str(tmp_path / "log"))
    pid = wait_for_pid(tmp_path / "pid")
    os.kill(pid, signal.SIGKILL)
    first.join(timeout=30)
    assert first.exitcode == -signal.SIGKILL

    (tmp_path / "pid").unlink()
    second = autograde_fork.start(PROBE, ["nbgrader", "sleep"], str(tmp_path),
                                  {"PATH": os.environ["PATH"]}, str(tmp_path / "log"))
    pid = wait_for_pid(tmp_path / "pid")
    forkserver = parent_of(pid)
    assert forkserver != os.getpid()
    os.kill(forkserver, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and not zombie(pid):
        assert time.monotonic() < deadline, "the fork outlived its forkserver"
        time.sleep(0.1)
    second.join(timeout=30)
    assert second.exitcode is not None
    status, _log = run(tmp_path, "exit", "5")  # a new forkserver starts
    assert status == 5


def wait_for_pid(path: Path) -> int:
    deadline = time.monotonic() + 60
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, "the probe never started"
        time.sleep(0.1)
    return int(path.read_text())


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
