"""Handed-in entries that are not files or folders: moved aside before nbgrader copies them.

``nbgrader autograde`` copies every handed-in file into the student's autograded folder
with ``shutil.copy``, which follows symbolic links: a link named ``notes.txt`` to the
gradebook or to a neighbour's notebook would copy them into this student's work and
feedback, and a FIFO or a link to ``/dev/zero`` would hang the copy or fill the disk.
Before autograde, ``set_aside_non_regular`` moves every entry of a submission that is not
a regular file or a real folder (links of any kind, FIFOs, sockets, devices) to
``refused/<student>/<assignment>/`` under the same relative path, without opening or
following it: nothing is lost and the instructor can look at it there.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

REFUSED = "refused"  # beside submitted/ and autograded/ in the course folder

KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a UNIX socket",
         stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def kind(path: Path) -> str | None:
    """None for a regular file or a real folder, else what ``path`` is, in words (a link
    is described by the path it holds, never followed)."""
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return f"a symbolic link to {os.readlink(path)}"
    return KINDS.get(stat.S_IFMT(mode), f"a special file (mode {stat.S_IFMT(mode):#o})")


def _non_regular(folder: Path) -> list[Path]:
    """Every entry under the real folder ``folder`` that is not a regular file or a real
    folder; no link is followed, so the walk never leaves ``folder``."""
    found, todo = [], [folder]
    while todo:
        with os.scandir(todo.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(Path(entry.path))
                elif not entry.is_file(follow_symlinks=False):
                    found.append(Path(entry.path))
    return sorted(found)


def _move_aside(path: Path, dest: Path) -> Path | None:
    """Rename ``path`` itself (never a link's target) to ``dest``, or to ``dest.1``, ... if
    that is taken; None if it is gone already (another grading process moved it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    free, n = dest, 0
    while os.path.lexists(free):
        n += 1
        free = dest.with_name(f"{dest.name}.{n}")
    try:
        os.rename(path, free)
    except FileNotFoundError:
        return None
    return free


def _refused(submitted: Path, assignment: str) -> list[Path]:
    """The entries to refuse: a student's folder or submission folder that is not a real
    folder, else every non-regular entry inside the submission."""
    found = []
    for student in sorted(os.listdir(submitted)):
        folder = submitted / student
        submission = folder / assignment
        try:
            if kind(folder):
                found.append(folder)
            elif folder.is_dir() and os.path.lexists(submission):  # no link followed here
                if kind(submission):
                    found.append(submission)
                elif submission.is_dir():
                    found.extend(_non_regular(submission))
        except FileNotFoundError:  # another grading process moved it first
            continue
    return found


def set_aside_non_regular(course: Path, assignment: str) -> list[tuple[Path, str, Path]]:
    """Move every non-regular entry of ``assignment``'s submissions to ``course/refused``
    (see the module's docstring); return each one's (path it had, what it is, where it is
    now)."""
    submitted = course / "submitted"
    if not submitted.is_dir():  # the instructor's own folder: it may be a link
        return []
    moved = []
    for path in _refused(submitted, assignment):
        try:
            what = kind(path)
        except FileNotFoundError:  # another grading process moved it first
            continue
        where = _move_aside(path, course / REFUSED / path.relative_to(submitted))
        if what and where:
            moved.append((path, what, where))
    return moved


def refusal_line(path: Path, what: str, kept: Path) -> str:
    """What the instructor's log says of one moved entry."""
    return f"{path} is {what}, not a regular file: moved to {kept}, neither copied nor graded"
