"""Run untrusted commands (students' code) under bubblewrap, with resource limits.

The sandbox sees the system folders read-only (``/usr``, which holds ``/usr/local``,
``/etc`` and the ``/bin``-style links), a fresh ``/tmp`` of bounded size, ``/proc`` and a
minimal ``/dev``, plus exactly the paths the caller lists: nothing of ``/root``, ``/home``
or ``/work`` unless listed. It has no network unless asked for, and only the environment
given.

The number of tasks (processes and threads) a sandbox runs at once is bounded twice over,
by RLIMIT_NPROC inside its user namespace and by a pids cgroup of its own (task_limit.py
says why both).

``CNN_GRADER_NO_SANDBOX=1`` runs the commands without bubblewrap (same limits,
environment, folder and timeout, but the task limit only where a pids cgroup can be
made) and warns once on stderr.
"""
from __future__ import annotations

import functools
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cnn_grader import task_limit

NO_SANDBOX_ENV = "CNN_GRADER_NO_SANDBOX"
BWRAP: str | None = shutil.which("bwrap")

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
DEFAULT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
OUTPUT_CHARS = 20_000
_OUTPUT_BYTES = 4 * OUTPUT_CHARS  # an UTF-8 character takes at most 4 bytes
_SIGNAL_HINTS = {
    signal.SIGKILL: " (out of memory?)",
    signal.SIGXCPU: " (CPU time limit)",
    signal.SIGXFSZ: " (file size limit)",
}


@dataclass(frozen=True)
class Limits:
    """Resource limits of a sandboxed process; None leaves that resource unlimited."""

    memory_bytes: int | None = 10 * 2**30  # RLIMIT_AS; `import torch` fails below about 8 GB
    cpu_seconds: int | None = 600  # RLIMIT_CPU, summed over all threads
    file_bytes: int | None = 64 * 2**20  # RLIMIT_FSIZE: the largest file it may write
    wall_seconds: float = 300.0  # then the whole process group is killed
    processes: int | None = 512  # tasks (processes and threads) at once; task_limit.py
    tmp_bytes: int = 2**30  # the size of the sandbox's /tmp (a tmpfs, in memory)
    scratch_bytes: int = 2**30  # the size of a scratch working directory (``in_scratch_copy``)


@dataclass(frozen=True)
class Outcome:
    """How a sandboxed command ended.

    ``returncode`` is None after the wall-clock limit, negative (-N) when signal N killed
    the command (``signal`` then says N), else its exit status.
    """

    returncode: int | None
    timed_out: bool
    signal: int | None
    output: str  # stdout and stderr together, the last OUTPUT_CHARS characters
    seconds: float

    def describe(self) -> str:
        """One line in words: how the command ended."""
        if self.timed_out:
            return f"ran past its time limit and was stopped after {self.seconds:.0f} s"
        if self.signal is not None:
            name = signal.Signals(self.signal).name
            return f"was killed by signal {name}{_SIGNAL_HINTS.get(self.signal, '')}"
        if self.returncode:
            return f"exited with status {self.returncode}"
        return "finished"


# Where a sandbox finds, read-only, the folder that ``in_scratch_copy`` copies.
HANDED_IN = Path("/run/cnn-handed-in")


def in_scratch_copy(argv: list[str]) -> list[str]:
    """``argv``, run after copying ``HANDED_IN`` into the working directory: give the
    sandbox the real folder at ``HANDED_IN`` (``mounts``) and a tmpfs of
    ``Limits.scratch_bytes`` at the working directory (``scratch``). Student code then
    works in a copy that is thrown away with the sandbox; what does not fit is left out
    (cp says so on stderr) and ``argv`` runs all the same."""
    return ["/bin/sh", "-c", 'cp -R "$0"/. . ; exec "$@"', str(HANDED_IN), *argv]


def sandbox_disabled() -> bool:
    """Whether CNN_GRADER_NO_SANDBOX=1 asks to run without bubblewrap."""
    return os.environ.get(NO_SANDBOX_ENV) == "1"


@functools.cache
def warn_unsandboxed() -> None:
    """Say once on stderr that students' code runs without a sandbox."""
    print(f"grading without a sandbox: {NO_SANDBOX_ENV}=1 is set, so students' code runs "
          "with this user's rights, files and network", file=sys.stderr)


def sandbox_problem() -> str | None:
    """None when bubblewrap runs here and bounds a sandbox's tasks, else what is wrong and
    what to do about it."""
    return _probe(BWRAP) or task_limit.problem()


@functools.cache
def _probe(bwrap: str | None) -> str | None:
    fallback = (f"or set {NO_SANDBOX_ENV}=1 to grade without a sandbox (students' code then "
                "runs with your rights)")
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed: `apt-get install bubblewrap`, {fallback}"
    if task_limit.PRLIMIT is None:
        return task_limit.problem()
    try:
        subprocess.run(bwrap_command(["true"]), capture_output=True, text=True, check=True,
                       timeout=30, env=DEFAULT_ENV)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", None) or error
        return (f"bubblewrap ({bwrap}) cannot run here: {str(detail).strip()}; it needs user "
                f"namespaces (or root), {fallback}")
    return None


def sandbox_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """``env`` plus a default PATH, HOME=/tmp and LANG where it has none."""
    return {**DEFAULT_ENV, **(env or {})}


def bwrap_command(argv: list[str], *, read_only: Iterable[Path] = (),
                  writable: Iterable[Path] = (), env: Mapping[str, str] | None = None,
                  cwd: Path | None = None, network: bool = False,
                  mounts: Mapping[Path, Path] | None = None,
                  scratch: Mapping[Path, int] | None = None,
                  tmp_bytes: int = Limits.tmp_bytes,
                  processes: int | None = Limits.processes) -> list[str]:
    """The bwrap command line that runs ``argv`` in the sandbox.

    ``read_only`` and ``writable`` paths (files or folders) appear at the same place, and
    at their symlink-resolved place too; a Python venv among them brings its base
    installation read-only. ``mounts`` maps a place in the sandbox to a folder shown there
    read-only; ``scratch`` maps a place to the size of an empty tmpfs there. /tmp is a
    tmpfs of ``tmp_bytes``. The command starts in ``cwd`` (default /tmp) with exactly
    ``sandbox_env(env)``, and the PWD that bwrap adds, under RLIMIT_NPROC ``processes``
    (the half of the task limit that is set inside; see task_limit.py).
    """
    if BWRAP is None:
        raise RuntimeError(_probe(None))
    share_net = ["--share-net"] if network else []
    setenv = [arg for name, value in sandbox_env(env).items() for arg in ("--setenv", name, value)]
    return [BWRAP, "--unshare-all", *share_net, "--die-with-parent", "--new-session",
            *_system_args(), "--proc", "/proc", "--dev", "/dev",
            "--size", str(tmp_bytes), "--tmpfs", "/tmp",
            *_bind_args(read_only, writable, mounts or {}, scratch or {}), "--clearenv",
            *setenv, "--chdir", os.path.abspath(cwd or "/tmp"), "--",
            *(argv if processes is None else task_limit.limited(argv, processes))]


def _system_args() -> list[str]:
    """Read-only system folders; those that are symlinks stay symlinks."""
    args: list[str] = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _bind_args(read_only: Iterable[Path], writable: Iterable[Path],
               mounts: Mapping[Path, Path], scratch: Mapping[Path, int]) -> list[str]:
    """Bind and tmpfs options, parents before children so that a nested one wins."""
    places: dict[Path, list[str]] = {  # place in the sandbox -> its options
        Path(os.path.abspath(place)): ["--ro-bind", str(Path(source).resolve(strict=True))]
        for place, source in mounts.items()}
    for option, paths in (("--ro-bind", read_only), ("--bind", writable)):
        for path in paths:
            real = Path(path).resolve(strict=True)
            places[Path(os.path.abspath(path))] = places[real] = [option, str(real)]
    for options in list(places.values()):
        base = _venv_base(Path(options[1]))
        if base is not None:
            places.setdefault(base, ["--ro-bind", str(base)])
    for place, size in scratch.items():
        places[Path(os.path.abspath(place))] = ["--size", str(size), "--tmpfs"]
    ordered = sorted(places.items(), key=lambda item: len(item[0].parts))
    return [arg for place, options in ordered for arg in (*options, str(place))]


def _venv_base(path: Path) -> Path | None:
    """The Python installation a venv folder was made from (its pyvenv.cfg `home`'s parent)."""
    config = path / "pyvenv.cfg"
    if not config.is_file():
        return None
    for line in config.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).resolve().parent
    return None


def limit_setter(limits: Limits,
                 group: task_limit.TaskGroup | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that applies ``limits``, forbids core dumps and joins ``group``.

    (The task limit's RLIMIT_NPROC is set inside the sandbox, by ``bwrap_command``: set
    here, the user namespace would count every process of the user against it.)"""
    values = {
        resource.RLIMIT_AS: limits.memory_bytes,
        resource.RLIMIT_CPU: limits.cpu_seconds,
        resource.RLIMIT_FSIZE: limits.file_bytes,
        resource.RLIMIT_CORE: 0,
    }

    def apply() -> None:
        if group is not None:
            group.join()
        for which, value in values.items():
            if value is not None:
                _, hard = resource.getrlimit(which)
                value = value if hard == resource.RLIM_INFINITY else min(value, hard)
                resource.setrlimit(which, (value, value))

    return apply


def run_sandboxed(argv: list[str], *, read_only: Iterable[Path] = (),
                  writable: Iterable[Path] = (), env: dict[str, str] | None = None,
                  cwd: Path | None = None, limits: Limits = Limits(),
                  network: bool = False, mounts: Mapping[Path, Path] | None = None,
                  scratch: Mapping[Path, int] | None = None) -> Outcome:
    """Run ``argv`` in the sandbox under ``limits``; see ``bwrap_command`` for what it sees.

    Raises RuntimeError (saying what to install) when bubblewrap cannot run, unless
    CNN_GRADER_NO_SANDBOX=1 asks to run ``argv`` directly, and FileNotFoundError when a
    listed path does not exist.
    """
    if sandbox_disabled():
        warn_unsandboxed()
        return _run(list(argv), env=sandbox_env(env), cwd=cwd, limits=limits, sandboxed=False)
    problem = sandbox_problem()
    if problem is not None:
        raise RuntimeError(problem)
    command = bwrap_command(argv, read_only=read_only, writable=writable, env=env, cwd=cwd,
                            network=network, mounts=mounts, scratch=scratch,
                            tmp_bytes=limits.tmp_bytes, processes=limits.processes)
    return _run(command, env=sandbox_env(env), cwd=None, limits=limits, sandboxed=True)


def _run(command: list[str], *, env: dict[str, str], cwd: Path | None, limits: Limits,
         sandboxed: bool) -> Outcome:
    """Run ``command`` in a new session and a task group of its own; kill its process group
    and what is left in the group at the end or the deadline."""
    group = None if limits.processes is None else task_limit.task_group(limits.processes)
    try:
        return _run_in(command, env=env, cwd=cwd, limits=limits, sandboxed=sandboxed,
                       group=group)
    finally:
        if group is not None:
            group.remove()


def _run_in(command: list[str], *, env: dict[str, str], cwd: Path | None, limits: Limits,
            sandboxed: bool, group: task_limit.TaskGroup | None) -> Outcome:
    start = time.monotonic()
    deadline = start + limits.wall_seconds
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True,
                          preexec_fn=limit_setter(limits, group)) as process:
        tail, timed_out = _read_tail(process, deadline)
        if not timed_out:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        kill_group(process.pid)  # leftovers too (a bwrap sandbox dies with bwrap)
        process.wait()
    output = tail.decode(errors="replace")[-OUTPUT_CHARS:]
    seconds = time.monotonic() - start
    if timed_out:
        return Outcome(None, True, None, output, seconds)
    returncode = process.returncode
    if sandboxed and 128 < returncode < 128 + signal.NSIG:  # bwrap reports signal N as 128+N
        returncode = 128 - returncode
    signum = -returncode if returncode < 0 else None
    return Outcome(returncode, False, signum, output, seconds)


def _read_tail(process: subprocess.Popen, deadline: float) -> tuple[bytes, bool]:
    """The last bytes of the output until end of file, and whether the deadline came first."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    tail = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bytes(tail), True
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return bytes(tail), False
            tail += chunk
            del tail[:-_OUTPUT_BYTES]


def kill_group(pgid: int) -> None:
    """SIGKILL to process group ``pgid``, if it still exists."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
