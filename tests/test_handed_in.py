"""Handed-in links, FIFOs, sockets and devices (cnn_grader/handed_in.py): moved aside to
refused/, never followed, opened or copied; every regular file stays as it was."""
from __future__ import annotations

import os
import resource
import signal
import socket
import sys
import stat
from pathlib import Path
from typing import Callable

import pytest

from cnn_grader.handed_in import set_aside_non_regular

ASSIGNMENT = "assignment_cnn"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
SECRET = b"the instructor's secret, never to be copied"


@pytest.fixture(autouse=True)
def bounded():
    """A wrong implementation fails here rather than fill the disk (copying a link to
    /dev/zero) or hang (opening a FIFO): files of at most 16 MiB, 60 s a test."""
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    cap = 16 * 2**20 if limits[1] == resource.RLIM_INFINITY else min(16 * 2**20, limits[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (cap, limits[1]))  # Python ignores SIGXFSZ

    def too_long(*_):
        raise TimeoutError("still running after 60 s: blocked opening a FIFO?")

    handler = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, handler)
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)


def make_course(root: Path) -> Path:
    """A course with a gradebook, two students' regular submissions and a file outside."""
    course = root / "course"
    for student in ("ada", "bob"):
        submission = course / "submitted" / student / ASSIGNMENT
        (submission / "data").mkdir(parents=True)
        (submission / NOTEBOOK).write_text(f'{{"student": "{student}"}}')
        (submission / "data" / "notes.txt").write_text(f"{student}'s notes")
    (course / "gradebook.db").write_bytes(b"SQLite format 3\0" + SECRET)
    os.chmod(course / "gradebook.db", 0o600)
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_bytes(SECRET)
    os.chmod(root / "outside" / "secret.txt", 0o640)
    return course


def walk(top: Path) -> dict[str, tuple[int, str | None]]:
    """Every entry under ``top``, without following links: its file type and, for a
    link, the path it holds."""
    found = {}
    for folder, folders, files in os.walk(top, followlinks=False):
        for name in folders + files:
            path = Path(folder) / name
            mode = os.lstat(path).st_mode
            found[str(path.relative_to(top))] = (
                stat.S_IFMT(mode), os.readlink(path) if stat.S_ISLNK(mode) else None)
    return found


def regular_files(top: Path) -> dict[str, tuple[bytes, int]]:
    """Every regular file under ``top`` (no link followed): its bytes and mode."""
    return {name: ((top / name).read_bytes(), os.lstat(top / name).st_mode)
            for name, (kind, _) in walk(top).items() if kind == stat.S_IFREG}


def only_files_and_folders(top: Path) -> bool:
    return all(kind in (stat.S_IFREG, stat.S_IFDIR) for kind, _ in walk(top).values())


def bind_socket(path: Path) -> None:
    """A UNIX socket at ``path`` (bound by a relative name: the absolute one may be too
    long for sun_path); the file stays after the socket is closed."""
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(path.name)
    finally:
        os.chdir(here)


def char_device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a device file (os.mknod S_IFCHR) needs root")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is


def block_device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a device file (os.mknod S_IFBLK) needs root")
    os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 0))  # what /dev/loop0 is


def replace_with_link(path: Path, target: Path) -> None:
    """``path``, a folder of regular files, becomes a link to ``target``."""
    for name, (kind, _) in sorted(walk(path).items(), reverse=True):
        (os.unlink if kind != stat.S_IFDIR else os.rmdir)(path / name)
    path.rmdir()
    os.symlink(target, path)


# name -> (what to make at which path of ada's, the start of the kind's words); the path is
# relative to submitted/, the maker gets the entry's path and the root of the test.
Maker = Callable[[Path, Path], None]
CASES: dict[str, tuple[str, Maker, str]] = {
    "link to a file outside the course": (
        f"ada/{ASSIGNMENT}/notes.txt",
        lambda p, root: os.symlink(root / "outside" / "secret.txt", p),
        "a symbolic link to /"),
    "link to the gradebook": (
        f"ada/{ASSIGNMENT}/gradebook.txt",
        lambda p, root: os.symlink(root / "course" / "gradebook.db", p),
        "a symbolic link to /"),
    "link to a neighbour's notebook": (
        f"ada/{ASSIGNMENT}/{NOTEBOOK}",
        lambda p, root: (p.unlink(), os.symlink(
            root / "course" / "submitted" / "bob" / ASSIGNMENT / NOTEBOOK, p)),
        "a symbolic link to /"),
    "relative link to the gradebook": (
        f"ada/{ASSIGNMENT}/db.txt",
        lambda p, root: os.symlink("../../../gradebook.db", p),
        "a symbolic link to ../../../gradebook.db"),
    "relative link to a neighbour's notebook": (
        f"ada/{ASSIGNMENT}/copied.ipynb",
        lambda p, root: os.symlink(f"../../bob/{ASSIGNMENT}/{NOTEBOOK}", p),
        "a symbolic link to ../../bob/"),
    "link to /dev/zero": (
        f"ada/{ASSIGNMENT}/zeros.bin", lambda p, root: os.symlink("/dev/zero", p),
        "a symbolic link to /dev/zero"),
    "dangling link": (
        f"ada/{ASSIGNMENT}/gone.txt",
        lambda p, root: os.symlink(root / "no such file", p), "a symbolic link to /"),
    "link to a folder": (
        f"ada/{ASSIGNMENT}/bobs_work",
        lambda p, root: os.symlink(root / "course" / "submitted" / "bob", p),
        "a symbolic link to /"),
    "link to a link": (
        f"ada/{ASSIGNMENT}/twice.txt",
        lambda p, root: (os.symlink(root / "outside" / "secret.txt", root / "hop"),
                         os.symlink(root / "hop", p)),
        "a symbolic link to /"),
    "FIFO": (f"ada/{ASSIGNMENT}/pipe.txt", lambda p, root: os.mkfifo(p), "a FIFO"),
    "UNIX socket": (f"ada/{ASSIGNMENT}/socket", lambda p, root: bind_socket(p),
                    "a UNIX socket"),
    "character device": (f"ada/{ASSIGNMENT}/null", lambda p, root: char_device(p),
                         "a character device"),
    "block device": (f"ada/{ASSIGNMENT}/disk", lambda p, root: block_device(p),
                     "a block device"),
    "link nested in a subfolder": (
        f"ada/{ASSIGNMENT}/data/deeper/still/notes.txt",
        lambda p, root: (p.parent.mkdir(parents=True),
                         os.symlink(root / "outside" / "secret.txt", p)),
        "a symbolic link to /"),
    "FIFO nested in a subfolder": (
        f"ada/{ASSIGNMENT}/data/pipe", lambda p, root: os.mkfifo(p), "a FIFO"),
    "the submission folder is a link to a neighbour's": (
        f"ada/{ASSIGNMENT}",
        lambda p, root: replace_with_link(p, root / "course" / "submitted" / "bob" / ASSIGNMENT),
        "a symbolic link to /"),
    "the submission folder is a relative link outside": (
        f"ada/{ASSIGNMENT}", lambda p, root: replace_with_link(p, Path("../../../outside")),
        "a symbolic link to ../../../outside"),
    "the student's folder is a link to a neighbour's": (
        "ada", lambda p, root: replace_with_link(p, Path("bob")), "a symbolic link to bob"),
    "the student's folder is a dangling link": (
        "ada", lambda p, root: replace_with_link(p, root / "nowhere"), "a symbolic link to /"),
}


@pytest.mark.parametrize("case", CASES)
def test_every_entry_but_files_and_folders_is_moved_aside_untouched(tmp_path, case):
    # kills: a check that follows links (os.path.isfile, os.stat, Path.is_file), a walk
    # into linked folders, a copy or a delete in place of a move, a link's target moved or
    # read, a student's or submission folder that is a link left in place
    course = make_course(tmp_path)
    where, make, words = CASES[case]
    submitted, refused = course / "submitted", course / "refused"
    make(submitted / where, tmp_path)
    before, files_before = walk(submitted), regular_files(tmp_path)

    moved = set_aside_non_regular(course, ASSIGNMENT)

    assert [(path, kept) for path, _, kept in moved] == [(submitted / where,
                                                          refused / where)]
    assert moved[0][1].startswith(words), moved
    assert only_files_and_folders(submitted), walk(submitted)
    assert not os.path.lexists(submitted / where)
    assert walk(refused)[where] == before[where]  # the same kind; a link holds the same path
    assert regular_files(tmp_path) == files_before  # targets and every file untouched
    assert walk(submitted) == {  # nothing else moved
        n: e for n, e in before.items() if n != where and not n.startswith(where + "/")}
    assert set_aside_non_regular(course, ASSIGNMENT) == []  # nothing left to refuse


def test_a_submission_of_files_and_folders_is_left_as_it_is(tmp_path):
    # kills: regular files or real folders refused, refused/ made for nothing
    course = make_course(tmp_path)
    (course / "submitted" / "ada" / ASSIGNMENT / "empty folder").mkdir()
    (course / "submitted" / "ada" / ASSIGNMENT / "empty.txt").touch()
    (course / "submitted" / "cy" / ASSIGNMENT).mkdir(parents=True)  # nothing handed in
    (course / "submitted" / "dee").mkdir()  # another assignment only
    (course / "submitted" / "README").write_text("not a student")
    before, files_before = walk(tmp_path), regular_files(tmp_path)
    assert set_aside_non_regular(course, ASSIGNMENT) == []
    assert walk(tmp_path) == before and regular_files(tmp_path) == files_before
    assert set_aside_non_regular(tmp_path / "no course", ASSIGNMENT) == []


def test_only_the_graded_assignment_is_walked(tmp_path):
    # kills: the whole student folder walked (another assignment is refused when it is
    # graded, not before)
    course = make_course(tmp_path)
    other = course / "submitted" / "ada" / "another_assignment"
    other.mkdir()
    os.symlink("/etc/passwd", other / "passwd")
    assert set_aside_non_regular(course, ASSIGNMENT) == []
    assert os.readlink(other / "passwd") == "/etc/passwd"


def test_an_entry_refused_again_keeps_the_earlier_one(tmp_path):
    # kills: a rename over what refused/ holds from an earlier run (lost)
    course = make_course(tmp_path)
    link = course / "submitted" / "ada" / ASSIGNMENT / "notes.txt"
    for target in ("/etc/passwd", "/etc/shadow", "/etc/hosts"):
        os.symlink(target, link)
        [(_, _, kept)] = set_aside_non_regular(course, ASSIGNMENT)
        assert os.readlink(kept) == target
    refused = course / "refused" / "ada" / ASSIGNMENT
    assert [os.readlink(refused / name) for name in ("notes.txt", "notes.txt.1",
                                                     "notes.txt.2")] == [
        "/etc/passwd", "/etc/shadow", "/etc/hosts"]


def test_nbgraders_copy_then_copies_nothing_of_a_links_target(tmp_path):
    """What ``nbgrader autograde`` copies (BaseConverter.init_assignment, before any
    gradebook check) after the entries are set aside: ada's regular files, nothing else."""
    # kills: any entry left that shutil.copy would follow or open (it would copy the
    # gradebook's or bob's bytes, hang on the FIFO, or copy /dev/zero forever)
    from nbgrader.converters import Autograde
    from nbgrader.converters.base import BaseConverter
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import find_all_files

    course = make_course(tmp_path)
    for name in ("link to a file outside the course", "link to the gradebook",
                 "relative link to a neighbour's notebook", "link to /dev/zero",
                 "link to a folder", "FIFO", "UNIX socket", "link nested in a subfolder"):
        where, make, _ = CASES[name]
        make(course / "submitted" / where, tmp_path)
    submission = course / "submitted" / "ada" / ASSIGNMENT
    files = regular_files(submission)

    assert len(set_aside_non_regular(course, ASSIGNMENT)) == 8
    # Checked before copying, so that a failure here cannot hang on the FIFO or /dev/zero.
    assert all(stat.S_ISREG(os.lstat(p).st_mode) for p in find_all_files(str(submission)))

    converter = Autograde(coursedir=CourseDirectory(root=str(course)))
    BaseConverter.init_assignment(converter, ASSIGNMENT, "ada")
    autograded = course / "autograded" / "ada" / ASSIGNMENT
    copied = regular_files(autograded)
    assert set(copied) == set(files) - {NOTEBOOK}  # nbgrader writes the notebook itself
    assert all(copied[name][0] == files[name][0] for name in copied)
    assert only_files_and_folders(autograded)
    assert not any(SECRET in data or b"bob" in data for data, _ in copied.values())


def test_autograde_sets_them_aside_before_reading_any_notebook(tmp_path, monkeypatch, capsys):
    """grader/nbgrader_config.py under ``nbgrader autograde``: a link is moved aside and
    reported before set_aside_unreadable reads the notebooks (through a link, a FIFO
    or /dev/zero, that read would follow it, or hang)."""
    # kills: the call left out of nbgrader_config.py, or made after set_aside_unreadable
    import shutil

    import nbformat
    from traitlets.config import PyFileConfigLoader

    from cnn_grader import preflight

    course = make_course(tmp_path)
    shutil.copy(Path(__file__).resolve().parent.parent / "grader" / "nbgrader_config.py",
                course / "nbgrader_config.py")
    released = course / "release" / ASSIGNMENT / NOTEBOOK
    released.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), released)
    notebook = course / "submitted" / "ada" / ASSIGNMENT / NOTEBOOK
    notebook.unlink()
    os.symlink(tmp_path / "outside" / "secret.txt", notebook)  # not a notebook: unreadable
    monkeypatch.setattr(preflight, "refusal", lambda require_gpu: None)  # any machine
    monkeypatch.setattr("sys.argv", ["nbgrader", "autograde", ASSIGNMENT])
    monkeypatch.setattr("sys.path", list(sys.path))  # the configuration adds to it

    PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()

    kept = course / "refused" / "ada" / ASSIGNMENT / NOTEBOOK
    assert os.readlink(kept) == str(tmp_path / "outside" / "secret.txt")
    assert only_files_and_folders(course / "submitted")
    assert not os.path.lexists(notebook)  # no stand-in: the unreadable check never saw it
    assert (f"[nbgrader_config] {notebook} is a symbolic link to {tmp_path}/outside/secret.txt"
            f", not a regular file: moved to {kept}") in capsys.readouterr().err
