"""`nbgrader zip_collect assignment_cnn` with the course's configuration files an LMS
download (Canvas's naming) into submitted/, as README.md tells instructors to."""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from generate_assignment import ASSIGNMENT, NOTEBOOK, generate, make_course, nbgrader  # noqa: E402


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    course = make_course(tmp_path_factory.mktemp("collect") / "grader")
    generate(course)
    return course


def download(course: Path, files: dict[str, bytes]) -> None:
    """An LMS download: one zip of the students' files, where zip_collect looks for it."""
    archive = course / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)


def test_a_canvas_download_lands_in_submitted(course):
    released = (course / "release" / ASSIGNMENT / NOTEBOOK).read_bytes()
    late = released.replace(b"YOUR CODE HERE", b"YOUR CODE HERE (late)")
    download(course, {
        f"doejane_12345_678901_{NOTEBOOK}": released,
        f"roeric_LATE_222_333_{NOTEBOOK.replace('.ipynb', '-1.ipynb')}": late,
        "doejane_12345_678901_cnnblocks.py": b"HELPER = 1\n",  # handed in beside it
        "smithal_4_5_my_own_name.ipynb": released,  # not the released name: skipped
        "smithal_4_5_model.pt": b"weights",  # not a kind of file the course takes
        "notes_from_the_lms.txt": b"not a submission",
    })
    result = nbgrader(course, "zip_collect", ASSIGNMENT, "--force")
    assert result.returncode == 0, result.stdout + result.stderr
    submitted = course / "submitted"
    assert (submitted / "doejane" / ASSIGNMENT / NOTEBOOK).read_bytes() == released
    assert (submitted / "roeric" / ASSIGNMENT / NOTEBOOK).read_bytes() == late
    assert (submitted / "doejane" / ASSIGNMENT / "cnnblocks.py").read_text() == "HELPER = 1\n"
    assert sorted(p.name for p in submitted.iterdir()) == ["doejane", "roeric"]
    assert sorted(p.name for p in (submitted / "doejane" / ASSIGNMENT).iterdir()) == [
        NOTEBOOK, "cnnblocks.py"]
    assert "Skipped notebook with invalid name 'my_own_name.ipynb'" in result.stderr


def test_an_archive_entry_that_climbs_out_stops_the_collection_and_writes_nothing(course):
    released = (course / "release" / ASSIGNMENT / NOTEBOOK).read_bytes()
    download(course, {f"okay_1_2_{NOTEBOOK}": released,
                      f"../../../escaped_1_2_{NOTEBOOK}": released})
    result = nbgrader(course, "zip_collect", ASSIGNMENT, "--force")
    assert result.returncode != 0 and "would be extracted outside" in result.stderr
    assert not list(course.parent.rglob("escaped*"))
    assert not (course / "submitted" / "okay").exists()
