"""The grader's bubblewrap sandbox (cnn_grader/sandbox.py)."""
from __future__ import annotations

import resource
import signal
import socket
import time
from pathlib import Path

import pytest

from cnn_grader import sandbox
from cnn_grader.sandbox import NO_SANDBOX_ENV, Limits, run_sandboxed, sandbox_problem

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
PYTHON = str(VENV / "bin" / "python")
SYSTEM_PYTHON = "/usr/bin/python3"
SLEEP = "987.654"  # an unusual duration, to find these sleeps in /proc
SLEEP_CMDLINE = f"sleep\0{SLEEP}\0".encode()



pytestmark = pytest.mark.usefixtures("sandbox_on")


def python(code: str, **kwargs) -> sandbox.Outcome:
    return run_sandboxed([SYSTEM_PYTHON, "-c", code], **kwargs)


def test_sees_only_the_listed_paths_and_env(tmp_path):
    data, out, secret = tmp_path / "data", tmp_path / "out", tmp_path / "secret"
    for folder in (data, out, secret):
        folder.mkdir()
    (data / "in.txt").write_text("input")
    (secret / "secret.txt").write_text("hidden")
    code = f"""
import os
print("read", open({str(data / 'in.txt')!r}).read())
open({str(out / 'out.txt')!r}, "w").write("written")
for path in ({str(data / 'new.txt')!r}, {str(secret / 'secret.txt')!r},
             {str(REPO / 'grader')!r}, {str(REPO / 'cnn_grader')!r}):
    try:
        open(path, "w" if path.endswith("new.txt") else "r")
        print("reached", path)
    except (OSError, IsADirectoryError) as error:
        print("refused", path, type(error).__name__)
print("env", sorted(os.environ.items()))
"""
    outcome = python(code, read_only=[data], writable=[out], env={"GIVEN": "yes"})
    assert outcome.returncode == 0, outcome.output
    assert "read input" in outcome.output
    assert (out / "out.txt").read_text() == "written"
    assert "reached" not in outcome.output
    assert f"refused {data / 'new.txt'} OSError" in outcome.output  # read-only file system
    assert not (data / "new.txt").exists()
    assert f"refused {secret / 'secret.txt'} FileNotFoundError" in outcome.output
    assert f"refused {REPO / 'grader'} FileNotFoundError" in outcome.output
    assert f"refused {REPO / 'cnn_grader'} FileNotFoundError" in outcome.output
    env = eval(outcome.output.split("env ", 1)[1])  # noqa: S307 (our own printout)
    assert dict(env) == {**sandbox.DEFAULT_ENV, "GIVEN": "yes", "PWD": "/tmp"}  # bwrap sets PWD


def test_no_network():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        assert python(code).returncode != 0
        assert python(code, network=True).returncode == 0  # the test itself can fail


def test_timeout_kills_the_whole_tree(tmp_path):
    started = tmp_path / "started"
    code = f"""
import subprocess
subprocess.Popen(["sleep", "{SLEEP}"], start_new_session=True)  # leaves the process group
open({str(started)!r}, "w").close()
subprocess.run(["sleep", "{SLEEP}"])
"""
    outcome = python(code, writable=[tmp_path], limits=Limits(wall_seconds=2))
    assert outcome.timed_out and outcome.returncode is None
    assert 2 <= outcome.seconds < 10
    assert "time limit" in outcome.describe()
    assert started.exists()
    deadline = time.monotonic() + 60  # generous: they are gone at once unless the test fails
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sleepers()


def sleepers() -> list[str]:
    """PIDs of the processes that run `sleep SLEEP`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == SLEEP_CMDLINE:
                found.append(entry.name)
        except OSError:
            pass
    return found


def test_memory_limit_refuses_a_big_allocation():
    code = ("import resource, sys\n"  # exit 99 rather than fill 12 GiB when the limit is missing
            "if resource.getrlimit(resource.RLIMIT_AS)[0] > 10 * 2**30: sys.exit(99)\n"
            "bytearray(12 * 2**30)")
    outcome = python(code, limits=Limits(memory_bytes=10 * 2**30))
    assert outcome.returncode == 1, outcome.describe()
    assert "MemoryError" in outcome.output
    assert python("bytearray(2**20)", limits=Limits(memory_bytes=10 * 2**30)).returncode == 0


@pytest.mark.parametrize("limits, error", [
    (Limits(tmp_bytes=16 * 2**20), "ENOSPC"),  # /tmp is full
    (Limits(file_bytes=8 * 2**20), "EFBIG"),  # one file is too large
])
def test_tmp_and_file_size_limits_stop_a_big_write(limits, error):
    code = ("import errno\ntry:\n    with open('/tmp/big', 'wb') as out:\n"
            "        for _ in range(32):\n            out.write(bytes(2**20))\n"
            "except OSError as e:\n    print(errno.errorcode[e.errno])\nelse:\n    print('wrote')")
    outcome = python(code, limits=limits)
    assert outcome.returncode == 0 and outcome.output.split() == [error], outcome.output
    assert python(code).output.split() == ["wrote"]  # the default limits leave room


def test_torch_imports_under_the_default_limits():
    outcome = run_sandboxed([PYTHON, "-c", "import torch; print(torch.tensor([1, 2]).sum())"],
                            read_only=[VENV])
    assert outcome.returncode == 0, outcome.output
    assert "tensor(3)" in outcome.output


def test_huge_output_keeps_only_the_tail():
    code = ("import sys\nline = 'x' * 1023 + '\\n'\n"
            "for _ in range(200 * 1024): sys.stdout.write(line)\nprint('THE END')")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = python(code, limits=Limits(wall_seconds=120))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert outcome.returncode == 0, outcome.describe()
    assert len(outcome.output) == sandbox.OUTPUT_CHARS
    assert outcome.output.endswith("x\nTHE END\n")
    assert grown_kib < 50 * 1024


def test_exit_status_and_signals():
    exited = python("import os; os._exit(3)")
    assert (exited.returncode, exited.signal) == (3, None)
    assert exited.describe() == "exited with status 3"
    killed = python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.signal == signal.SIGKILL and killed.returncode == -signal.SIGKILL
    assert killed.describe() == "was killed by signal SIGKILL (out of memory?)"
    assert python("pass").describe() == "finished"


def test_no_sandbox_switch_runs_directly_and_warns(monkeypatch, capfd, tmp_path):
    monkeypatch.setenv(NO_SANDBOX_ENV, "1")
    monkeypatch.setattr(sandbox, "BWRAP", None)  # bwrap would now fail
    sandbox.warn_unsandboxed.cache_clear()
    outcome = python(f"print(open({str(REPO / 'cnn_grader' / 'sandbox.py')!r}).readline())",
                     cwd=tmp_path)
    outcome_again = python("import os; print(os.getcwd())", cwd=tmp_path)
    assert outcome.returncode == 0 and "Run untrusted commands" in outcome.output
    assert outcome_again.output.strip() == str(tmp_path)
    assert capfd.readouterr().err.count("grading without a sandbox") == 1


def test_sandbox_problem_says_what_to_install(monkeypatch):
    assert sandbox_problem() is None
    monkeypatch.setattr(sandbox, "BWRAP", None)
    problem = sandbox_problem()
    assert "apt-get install bubblewrap" in problem and NO_SANDBOX_ENV in problem
    with pytest.raises(RuntimeError, match="apt-get install bubblewrap"):
        python("pass")


def test_dev_holds_no_device_of_the_host():
    """/dev is bubblewrap's minimal one, on every machine: no GPU (/dev/nvidia*, /dev/dri),
    no disk, no host terminal. (scripts/check_sandbox_gpu.py checks it on a GPU machine.)"""
    outcome = python("import os; print(sorted(os.listdir('/dev')))")
    assert outcome.returncode == 0, outcome.output
    assert set(eval(outcome.output)) <= {  # noqa: S307 (our own printout)
        "core", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero"}
