"""The students' kernel under bubblewrap (cnn_grader/sandboxed_kernel.py): what a cell or a
constructor can read, write and reach, and that it can still do a student's work."""
from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest

from cnn_grader import task_limit
from cnn_grader.sandboxed_kernel import SandboxedKernelManager
from browser import free_port
from waiting import wait_for

# What trusted code writes, chmods or copies in the kernel's folder after the kernel ran
# (nbconvert, nbgrader's set_permissions and generate_feedback, classrun's marker), and
# what a hostile cell would point those names at.
TRUSTED_NAMES = ("assignment_cnn.ipynb", ".classrun-graded", "feedback.html", "notes.txt")


pytestmark = pytest.mark.usefixtures("sandbox_on")


def test_kernel_reads_its_folder_and_nothing_else_and_gets_no_secret(tmp_path, monkeypatch):
    secret, work = tmp_path / "secret", tmp_path / "work"
    secret.mkdir()
    work.mkdir()
    (secret / "secret.txt").write_text("hidden")
    (work / "helper.py").write_text("VALUE = 'handed in'\n")
    for name, value in (("NBGRADER_DB_URL", "postgresql://grader:password@db/cnn"),
                        ("CNN_GRADER_TRAINING_AUTHKEY", "deadbeef"),
                        ("CNN_GRADER_TRAINING_SOCKET", str(tmp_path / "training.sock")),
                        ("CNN_GRADER_CACHE", str(tmp_path)), ("PYTHONPATH", str(tmp_path)),
                        ("CNN_COURSE_PROFILE", "ci"), ("OMP_NUM_THREADS", "1")):
        monkeypatch.setenv(name, value)
    results = asyncio.run(run_in_kernel(SandboxedKernelManager(), work, [
        "1 + 1",
        f"open({str(secret / 'secret.txt')!r}).read()",
        "import helper; helper.VALUE",
        "open('note.txt', 'w').write('from the kernel'); open('note.txt').read()",
        "import os; sorted(k for k in os.environ if k not in ('PATH', 'HOME', 'PWD'))",
    ], interrupt=True))
    assert results[0] == ("ok", "2")
    assert results[1] == ("error", "FileNotFoundError")
    assert results[2] == ("ok", "'handed in'")
    assert results[3] == ("ok", "'from the kernel'")  # in the scratch copy ...
    assert not (work / "note.txt").exists()  # ... which is thrown away
    seen = set(eval(results[4][1]))  # noqa: S307 (the cell's list of names)
    assert {"CNN_COURSE_PROFILE", "OMP_NUM_THREADS"} <= seen  # the profile and threads
    from_host = seen & set(os.environ)  # the kernel's own (ipykernel's TERM, ...) aside
    assert from_host <= {"CNN_COURSE_PROFILE", "OMP_NUM_THREADS", "LANG", "MPLBACKEND",
                         "TERM"}, seen  # ipykernel sets TERM itself
    assert results[5] == ("error", "KeyboardInterrupt")  # interrupted, and still alive:
    assert results[6] == ("ok", "3")


def test_kernel_reaches_no_socket_of_the_host(tmp_path):
    """Neither a TCP service on the host's loopback (a Ray head's client server and
    dashboard are such services) nor a Unix socket outside the sandbox."""
    work = tmp_path / "work"
    work.mkdir()
    unix_path = tmp_path / "service.sock"
    with socket.create_server(("127.0.0.1", 0)) as tcp, \
            socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(unix_path))
        unix.listen()
        port = tcp.getsockname()[1]
        tcp_code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        unix_code = (f"import socket; socket.socket(socket.AF_UNIX).connect({str(unix_path)!r})")
        constructor = ("import socket, torch\n"
                       "class Net(torch.nn.Module):\n"
                       "    def __init__(self):\n"
                       "        super().__init__()\n"
                       f"        {tcp_code.split('; ')[1]}\n"
                       "Net()")
        results = asyncio.run(run_in_kernel(SandboxedKernelManager(), work,
                                            [tcp_code, unix_code, constructor]))
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the services are there: the test itself can fail
    assert results[0][0] == results[2][0] == "error", results
    assert results[0][1] in ("OSError", "ConnectionRefusedError", "TimeoutError"), results
    assert results[1] == ("error", "FileNotFoundError")


def course_state(folder: Path) -> dict[str, tuple]:
    """Every entry below ``folder`` (links not followed): its kind, mode, bytes or target."""
    state = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        content = (os.readlink(path) if path.is_symlink() else
                   path.read_bytes() if stat.S_ISREG(info.st_mode) else None)
        state[str(path.relative_to(folder))] = (stat.S_IFMT(info.st_mode),
                                                stat.S_IMODE(info.st_mode), content)
    return state


@pytest.mark.parametrize("name", TRUSTED_NAMES)
def test_links_planted_by_the_kernel_never_reach_the_course(tmp_path, name):
    """A cell replaces a name that trusted code later writes by a link to a hidden check,
    the gradebook, a neighbour's submission, the master or the course's configuration.
    The kernel's folder is a scratch copy: the course, links' targets included, stays
    byte for byte and mode for mode as it was."""
    course = tmp_path / "grader"
    work = course / "autograded" / "ada" / "assignment_cnn"
    targets = [course / "hidden_checks" / "test_parts.py", course / "gradebook.db",
               course / "submitted" / "bob" / "assignment_cnn" / "assignment_cnn.ipynb",
               course / "source" / "assignment_cnn" / "assignment_cnn.ipynb",
               course / "nbgrader_config.py"]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"the course's {target.name}")
        target.chmod(0o640)
    work.mkdir(parents=True)
    (work / "assignment_cnn.ipynb").write_text("{}")
    before = course_state(course)
    plant = "\n".join(
        f"import os\nfor index, target in enumerate({[str(t) for t in targets]!r}):\n"
        f"    os.symlink(target, {name!r} + str(index))\n"
        f"os.replace({name!r} + '1', {name!r})\n"
        f"open({name!r}, 'w').write('overwritten by the student')\n"
        f"sorted(os.listdir('.'))".splitlines())
    results = asyncio.run(run_in_kernel(SandboxedKernelManager(), work, [plant]))
    assert results[0][0] == "ok" and f"'{name}'" in results[0][1], results
    assert course_state(course) == before


def test_a_huge_write_fails_cleanly_and_leaves_nothing(tmp_path):
    """1.5 GiB into the working folder, then into /tmp in files of 256 MiB: both stop at
    the limits with an error the cell sees, the kernel lives on, the course is unchanged."""
    work = tmp_path / "work"
    work.mkdir()
    write = ("import errno\nchunk = bytes(64 * 2**20)\ntry:\n"
             "    with open({path!r}, 'wb') as out:\n"
             "        for _ in range(24):\n"
             "            out.write(chunk)\n"
             "except OSError as error:\n"
             "    written = errno.errorcode[error.errno]\n"
             "written")
    many = ("import errno, os\nchunk = bytes(256 * 2**20)\ndone = 0\ntry:\n"
            "    for index in range(6):\n"
            "        open(f'/tmp/part{index}', 'wb').write(chunk)\n"
            "        done += 1\n"
            "except OSError as error:\n"
            "    done = (done, errno.errorcode[error.errno])\n"
            "done")
    results = asyncio.run(run_in_kernel(SandboxedKernelManager(), work, [
        write.format(path="checkpoint.pt"), "import os; os.remove('checkpoint.pt')",
        many, "1 + 1"]))
    assert results[0][0] == "ok" and results[0][1] in ("'EFBIG'", "'ENOSPC'"), results
    assert results[2][0] == "ok" and results[2][1].endswith("'ENOSPC')"), results
    assert results[3] == ("ok", "2")
    assert sorted(os.listdir(work)) == []


def test_a_cell_that_starts_processes_stops_at_the_limit(tmp_path, monkeypatch):
    """Forks and threads from a cell are refused past the kernel's task limit, and the
    task group goes with the kernel, threads and all."""
    work = tmp_path / "work"
    work.mkdir()
    spawn = ("import os, signal, threading, time\nheld, children = 0, []\ntry:\n"
             "    for _ in range(300):\n"
             "        if {fork}:\n"
             "            children.append(os.fork())\n"
             "            if children[-1] == 0:\n"
             "                time.sleep(60)\n"
             "                os._exit(0)\n"
             "        else:\n"
             "            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
             "        held += 1\n"
             "except (OSError, RuntimeError) as error:\n"
             "    held = (held, type(error).__name__)\n"
             "for child in children:  # room for the next cell\n"
             "    os.kill(child, signal.SIGKILL)\n"
             "    os.waitpid(child, 0)\n"
             "held")
    groups = []  # every task group the kernels made
    make_group = task_limit.task_group
    monkeypatch.setattr(task_limit, "task_group",
                        lambda max_tasks: groups.append(make_group(max_tasks)) or groups[-1])
    manager = SandboxedKernelManager(processes=64)
    results = asyncio.run(run_in_kernel(manager, work, [
        spawn.format(fork=True), spawn.format(fork=False)]))
    results += asyncio.run(run_in_kernel(SandboxedKernelManager(processes=64), work, ["1 + 1"]))
    for status, value in results[:2]:
        assert status == "ok", results
        held, error = eval(value)  # noqa: S307 (the test's own cell)
        assert held < 64 and error in ("BlockingIOError", "RuntimeError"), results
    assert results[2] == ("ok", "2")
    if task_limit.pids_cgroup_base() is not None:  # as root, where the cgroup is the bound
        assert len(groups) == 2 and not [g for g in groups if g.path.exists()]


async def run_in_kernel(manager, cwd: Path, cells: list[str],
                        interrupt: bool = False) -> list[tuple[str, str]]:
    """(status, result or error name) of each cell; with ``interrupt``, then of an
    interrupted sleep and of `1 + 2`."""
    await manager.start_kernel(cwd=str(cwd))
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        results = [await execute(client, code) for code in cells]
        if interrupt:
            running = asyncio.Event()  # set by the cell's first output: interrupt it then
            sleeping = asyncio.ensure_future(execute(
                client, "import time; print('sleeping', flush=True); time.sleep(600)",
                running.set))
            await asyncio.wait_for(running.wait(), 60)
            await manager.interrupt_kernel()
            results.append(await asyncio.wait_for(sleeping, 60))
            results.append(await execute(client, "1 + 2"))
        return results
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)


async def execute(client, code: str, on_stream=lambda: None) -> tuple[str, str]:
    """(status, result or error name) of `code`; `on_stream` is called on its printouts."""
    values = []

    def keep(message):
        if message["msg_type"] == "execute_result":
            values.append(message["content"]["data"]["text/plain"])
        elif message["msg_type"] == "stream":
            on_stream()

    reply = await client.execute_interactive(code, timeout=120, output_hook=keep)
    content = reply["content"]
    return content["status"], content.get("ename") or "".join(values)


@pytest.mark.integration
def test_a_ray_head_without_authentication_is_out_of_reach(tmp_path):
    """Ray 2.60's default head (`ray start --head`: GCS, client server, dashboard, no
    token): its client server runs code for whoever connects. From a cell and from a
    constructor, ``ray.init("ray://...")`` and the dashboard's job API reach nothing."""
    import shutil
    import subprocess
    import sys
    import tempfile

    ray_cli = Path(sys.executable).parent / "ray"
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    ports = {"--port": free_port(), "--ray-client-server-port": free_port(),
             "--dashboard-port": free_port()}
    started = subprocess.run([str(ray_cli), "start", "--head", "--num-cpus=1",
                              "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                              f"--temp-dir={ray_tmp}",
                              *[f"{option}={port}" for option, port in ports.items()]],
                             env=env, capture_output=True, text=True, timeout=240)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        client, dashboard = ports["--ray-client-server-port"], ports["--dashboard-port"]
        work = tmp_path / "work"
        work.mkdir()
        joins = (f"import ray\ntry:\n    ray.init('ray://127.0.0.1:{client}')\n"
                 "    result = 'joined'\nexcept Exception as error:\n"
                 "    result = type(error).__name__\nresult")
        jobs = (f"import urllib.request\ntry:\n    result = urllib.request.urlopen("
                f"'http://127.0.0.1:{dashboard}/api/jobs/', timeout=5).status\n"
                "except Exception as error:\n    result = type(error).__name__\nresult")
        constructor = ("import socket, torch\nclass Net(torch.nn.Module):\n"
                       "    def __init__(self):\n        super().__init__()\n"
                       f"        socket.create_connection(('127.0.0.1', {client}), timeout=5)\n"
                       "Net()")
        results = asyncio.run(run_in_kernel(SandboxedKernelManager(), work,
                                            [joins, jobs, constructor]))
        for port in (client, dashboard):  # the doors are open here, outside the sandbox
            socket.create_connection(("127.0.0.1", port), timeout=30).close()
    finally:
        # this head's processes only (`ray stop` would stop every Ray instance here)
        subprocess.run(["pkill", "-9", "-f", ray_tmp], capture_output=True)
        wait_for(lambda: not subprocess.run(["pgrep", "-f", ray_tmp], capture_output=True
                                            ).stdout, 60, "the Ray head to stop")
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert results[0][0] == "ok" and results[0][1] not in ("'joined'", ""), results
    assert results[1][0] == "ok" and results[1][1] in ("'URLError'", "'OSError'"), results
    assert results[2][0] == "error", results
