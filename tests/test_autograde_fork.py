"""Each student's process forked from a warm one (cnn_grader/autograde_fork.py) behaves like
the command it replaces: its folder, arguments, environment, log, exit status and session,
and it dies with its parent."""
from __future__ import annotations

import multiprocessing.forkserver
import os
import signal
import socket
from pathlib import Path

import pytest

from cnn_grader import autograde_fork
from waiting import dead, parent_of, wait_for

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
    wait_for(lambda: dead(forkserver), 30, "the forkserver to die", poll=0.05)
    wait_for(lambda: dead(pid), 30, "the fork to die with its forkserver", poll=0.05)
    second.join(timeout=30)
    assert second.exitcode is not None
    status, _log = run(tmp_path, "exit", "5")  # a new forkserver starts
    assert status == 5


@pytest.mark.parametrize("socket_state", ["refuses", "is gone"])
def test_a_forkserver_that_cannot_take_the_request_yet_is_not_reaped_is_replaced(
        tmp_path, socket_state):
    """The window of the race: the old server's socket no longer listens but the server is
    not a zombie yet, so multiprocessing still counts it alive. A stopped server whose
    socket file is replaced holds that window open as long as the test needs."""
    first = autograde_fork.start(PROBE, ["nbgrader", "sleep"], str(tmp_path),
                                 {"PATH": os.environ["PATH"]}, str(tmp_path / "log"))
    pid = wait_for_pid(tmp_path / "pid")
    forkserver = parent_of(pid)
    os.kill(pid, signal.SIGKILL)
    first.join(timeout=30)
    os.kill(forkserver, signal.SIGSTOP)
    address = multiprocessing.forkserver._forkserver._forkserver_address
    assert multiprocessing.forkserver._forkserver._forkserver_pid == forkserver
    os.unlink(address)
    with socket.socket(socket.AF_UNIX) as deaf:
        if socket_state == "refuses":
            deaf.bind(address)  # bound, never listening: connect() is refused
        (tmp_path / "log").unlink()
        status, log = run(tmp_path, "exit", "5")
    assert status == 5
    error = "ConnectionRefusedError" if socket_state == "refuses" else "FileNotFoundError"
    assert (f"the forkserver (pid {forkserver}) could not take the request ({error}"
            in log), log
    with pytest.raises(ChildProcessError):  # the old server was killed and reaped
        os.waitpid(forkserver, os.WNOHANG)
    (tmp_path / "log").unlink()
    status, log = run(tmp_path, "exit", "4")  # the new server serves on
    assert status == 4 and "forkserver" not in log


def wait_for_pid(path: Path) -> int:
    """The pid the probe wrote (the file can exist before its text is written)."""
    return int(wait_for(lambda: path.exists() and path.read_text(), 60,
                        "the probe to write its pid", poll=0.1))
