"""How many tasks (processes and threads) one sandbox may run at once.

Two mechanisms bound every sandbox, because neither holds everywhere alone:

- ``RLIMIT_NPROC``, set by the sandbox's first command (``prlimit``, see ``limited``)
  inside the sandbox's own user namespace. Linux 5.14 and later count it per user
  namespace, so only the sandbox's own tasks count. It never binds uid 0: a grader that
  runs as root is not bounded by it.
- A pids cgroup with ``pids.max`` (``TaskGroup``), which binds root too: a child of this
  process's cgroup in the pids hierarchy (cgroup v1), or in the unified hierarchy where
  that cgroup hands the pids controller down (cgroup v2). Making one needs write access
  there: root, or a cgroup delegated to the grading user.

``problem()`` says when neither holds: grading as root where no pids cgroup can be made.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import time
from pathlib import Path

PRLIMIT: str | None = shutil.which("prlimit")
_GROUP_PREFIX = "cnn-sandbox"
_names = itertools.count()


def limited(argv: list[str], max_tasks: int) -> list[str]:
    """``argv`` run with RLIMIT_NPROC ``max_tasks``, set inside the sandbox (see above)."""
    if PRLIMIT is None:
        raise RuntimeError("prlimit is not installed: `apt-get install util-linux`")
    return [PRLIMIT, f"--nproc={max_tasks}", "--", *argv]


class TaskGroup:
    """A pids cgroup of its own: at most ``pids.max`` tasks in it and its descendants."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._procs = str(path / "cgroup.procs")

    def join(self) -> None:
        """Move the calling process into the group (a ``preexec_fn``: its children follow)."""
        fd = os.open(self._procs, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def remove(self, wait_seconds: float = 10.0) -> None:
        """Kill what is left in the group, then remove it (a group with tasks cannot go)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # EBUSY while killed tasks are being reaped
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def pids(self) -> list[int]:
        """The processes in the group now."""
        try:
            return [int(line) for line in Path(self._procs).read_text().split()]
        except FileNotFoundError:
            return []


def task_group(max_tasks: int) -> TaskGroup | None:
    """A new pids cgroup that admits at most ``max_tasks`` tasks, or None where none can
    be made here (see ``problem``). Groups left by processes that were killed before they
    could remove theirs go first (``remove_orphans``)."""
    base = pids_cgroup_base()
    if base is None:
        return None
    remove_orphans(base)
    path = base / f"{_own_prefix()}-{os.getpid()}-{next(_names)}"
    try:
        path.mkdir()
    except OSError:
        return None
    group = TaskGroup(path)
    try:
        (path / "pids.max").write_text(str(max_tasks))
    except OSError:
        group.remove()
        return None
    return group


def remove_orphans(base: Path) -> None:
    """Remove the groups under ``base`` whose owner (the process that named the group
    after itself) is gone, killing what is left in them: a grader killed with SIGKILL, as
    a class run's task past its time is, cannot remove its own. Only groups named from
    this PID namespace: another container's PIDs mean nothing here."""
    for path in base.glob(f"{_own_prefix()}-*-*"):
        owner = path.name.split("-")[-2]
        if owner.isdigit() and not Path("/proc", owner).exists():
            try:
                TaskGroup(path).remove(wait_seconds=1.0)
            except OSError:
                pass  # still busy: the next group's making tries again


def _own_prefix() -> str:
    """The start of the names of groups made from this PID namespace."""
    return f"{_GROUP_PREFIX}-{os.stat('/proc/self/ns/pid').st_ino}"


def pids_cgroup_base() -> Path | None:
    """The cgroup folder under which this process may make pids cgroups, or None."""
    for mountpoint, root, version in cgroup_mounts(Path("/proc/self/mountinfo").read_text()):
        own = _own_cgroup(version)
        if own is None or not own.startswith(root):
            continue
        base = Path(mountpoint, own[len(root):].lstrip("/"))
        if version == 2 and not _hands_down_pids(base):
            continue
        if os.access(base, os.W_OK):
            return base
    return None


def problem() -> str | None:
    """None when every sandbox's tasks are bounded here, else why not and what to do."""
    if PRLIMIT is None:
        return ("prlimit is not installed (it bounds a sandbox's processes): "
                "`apt-get install util-linux`")
    if os.geteuid() != 0 or pids_cgroup_base() is not None:
        return None
    return ("the grader runs as root and can make no pids cgroup here, so nothing bounds how "
            "many processes a student's code starts (RLIMIT_NPROC never binds root): grade as "
            "a user that is not root, or give the grader a writable pids cgroup (cgroup v1's "
            "pids hierarchy, or a cgroup v2 that delegates the pids controller)")


def cgroup_mounts(mountinfo: str) -> list[tuple[str, str, int]]:
    """(mount point, the mount's root in the hierarchy, 1 or 2) of the hierarchies that can
    bound tasks, from /proc/self/mountinfo's text: cgroup v1 mounts with the pids
    controller, and cgroup v2 mounts."""
    mounts = []
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _source, options = (tail.split() + ["", ""])[:3]
        root, mountpoint = fields.split()[3:5]
        if fstype == "cgroup" and "pids" in options.split(","):
            mounts.append((_unescape(mountpoint), _unescape(root), 1))
        elif fstype == "cgroup2":
            mounts.append((_unescape(mountpoint), _unescape(root), 2))
    return mounts


def _own_cgroup(version: int) -> str | None:
    """This process's cgroup path in the pids hierarchy (1) or the unified one (2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (version == 2 and controllers == "") or (
                version == 1 and "pids" in controllers.split(",")):
            return path
    return None


def _hands_down_pids(base: Path) -> bool:
    """Whether cgroup v2 folder ``base`` gives its children the pids controller. (A cgroup
    that holds processes, other than the root, cannot: the grader's own cgroup needs it
    switched on already, as in a container's root cgroup.)"""
    try:
        return "pids" in (base / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def _unescape(field: str) -> str:
    """A mountinfo path with its octal escapes (\\040 for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field)
