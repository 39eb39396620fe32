"""Run each student's ``nbgrader autograde`` in a process forked from a warm one.

Starting ``nbgrader autograde`` imports nbgrader, torch and torchvision: 7 to 10 s of CPU
on the course's 2-core machine, paid again for every student when each is graded by its
own command. Here a forkserver (``multiprocessing``'s, one per Ray worker) imports those
third-party packages once; each student is then a fresh fork of it that runs nbgrader's
own entry point with the command's arguments. The student still gets a process of its
own, exactly as with the command: its own session and process group (killed whole on
cancel), killed when its parent dies (the forkserver, which exits with the Ray worker),
its environment, working folder and log. The grader's own packages (cnn_grader,
cnn_course) are not preloaded, and the fork forgets the little of them that starting it
imported: the course's nbgrader_config.py imports the copy beside the course folder, as
the command does.

A forkserver that died is replaced on the next ``start``. ``multiprocessing`` replaces it
only once it can reap it; between the server closing its socket and becoming a zombie it
still counts as alive, and the connection is refused. ``start`` then kills and reaps that
server, forgets it, says so in the student's log and starts again, once.
"""
from __future__ import annotations

import atexit
import ctypes
import importlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
from collections.abc import Mapping, Sequence

NBGRADER = "nbgrader.apps.nbgraderapp:main"  # the ``nbgrader`` command's entry point
PRELOAD = ("torch", "torchvision.datasets", "nbgrader.apps.nbgraderapp",
           "nbgrader.converters", "nbgrader.preprocessors", "nbclient", "jupyter_client",
           "sqlalchemy", "alembic", "IPython.paths")
OWN_PACKAGES = ("cnn_grader", "cnn_course")  # imported by the course's configuration
_PR_SET_PDEATHSIG = 1
# How asking a forkserver that is dying or dead for a fork fails: its socket refuses or
# is gone, the connection is reset or cut short, or something else reaped the server.
SERVER_GONE = (ConnectionRefusedError, FileNotFoundError, ConnectionResetError,
               BrokenPipeError, EOFError, ChildProcessError)


def start(entry: str, argv: Sequence[str], cwd: str, env: Mapping[str, str],
          log: str) -> multiprocessing.Process:
    """Start ``entry`` (``module:function``) as ``argv`` in a fork of the warm process.

    A forkserver that cannot take the request is replaced and the fork asked for again,
    once; the student's ``log`` says so."""
    context = multiprocessing.get_context("forkserver")
    module = entry.partition(":")[0]
    context.set_forkserver_preload(list(PRELOAD) if entry == NBGRADER else [module])
    arguments = (entry, list(argv), cwd, dict(env), log)
    try:
        return _forked(context, arguments)
    except SERVER_GONE as error:
        pid = _replace_forkserver()
        with open(log, "a") as handle:
            handle.write(f"autograde_fork: the forkserver (pid {pid}) could not take the "
                         f"request ({type(error).__name__}: {error}); it was killed and a "
                         "new one started\n")
        return _forked(context, arguments)


def _forked(context: multiprocessing.context.ForkServerContext,
            arguments: tuple) -> multiprocessing.Process:
    process = context.Process(target=_run, args=arguments, daemon=False)
    process.start()
    return process


def _replace_forkserver() -> int | None:
    """Kill and reap this process's forkserver and forget it, so that the next fork starts
    a new one; return its pid. Its socket refused, so it can start no fork and runs none
    that would outlive it (each dies with it)."""
    server = multiprocessing.forkserver._forkserver  # the one the context uses
    with server._lock:
        pid = server._forkserver_pid
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass  # already reaped
        os.close(server._forkserver_alive_fd)
        server._forkserver_address = None
        server._forkserver_alive_fd = None
        server._forkserver_pid = None
    return pid


def _run(entry: str, argv: list[str], cwd: str, env: dict[str, str], log: str) -> None:
    """In the fork: become the command's process, run ``entry``, exit with its status."""
    parent = os.getppid()
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the forkserver died before prctl took effect
        os._exit(1)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = argv
    _threads_as_the_command(env)
    for name in [m for m in sys.modules if m.split(".")[0] in OWN_PACKAGES]:
        del sys.modules[name]
    output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    status = 0
    try:
        module, _, name = entry.partition(":")
        result = getattr(importlib.import_module(module), name)()
        status = result if isinstance(result, int) else 0
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, (int, type(None))):
            print(stop.code, file=sys.stderr)
    finally:
        atexit._run_exitfuncs()  # multiprocessing ends a fork with os._exit: run them here
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


def _threads_as_the_command(env: Mapping[str, str]) -> None:
    """The preloaded torch read the forkserver's OMP_NUM_THREADS when it was imported; a
    command would read the student's: set torch's thread count to that."""
    threads = env.get("OMP_NUM_THREADS", "")
    torch = sys.modules.get("torch")
    if torch is not None and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
