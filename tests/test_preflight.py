"""A machine that lacks what grading needs grades nobody and says what to install."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

from cnn_grader import preflight
from cnn_grader import sandbox
from cnn_grader.unreadable import set_aside_unreadable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from generate_assignment import ASSIGNMENT, NOTEBOOK, make_course, nbgrader  # noqa: E402


def test_this_machine_is_ready_for_the_ci_profile(monkeypatch):
    monkeypatch.setenv("CNN_COURSE_PROFILE", "ci")
    assert preflight.problems(require_gpu=False) == []


def test_a_missing_sandbox_is_named_with_its_package(monkeypatch):
    monkeypatch.setenv("CNN_COURSE_PROFILE", "ci")
    monkeypatch.setattr(sandbox, "BWRAP", None)
    found = preflight.problems(require_gpu=False)
    assert len(found) == 1 and "apt-get install bubblewrap" in found[0]
    monkeypatch.setenv(sandbox.NO_SANDBOX_ENV, "1")  # the explicit switch: grading goes on
    assert preflight.problems(require_gpu=False) == []


def test_missing_data_of_the_profile_is_named(monkeypatch, tmp_path, no_download):
    from cnn_course import data

    monkeypatch.setenv("CNN_COURSE_PROFILE", "cpu")
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(data, "_unpack_debian", lambda *_args: False)
    found = preflight.problems(require_gpu=False)
    assert len(found) == 1
    assert "'cpu' needs the full FashionMNIST" in found[0] and "dataset-fashion-mnist" in found[0]


def test_a_required_gpu_is_named(monkeypatch):
    monkeypatch.setenv("CNN_COURSE_PROFILE", "ci")
    monkeypatch.setattr(preflight.torch.cuda, "is_available", lambda: False)  # also on a GPU
    found = preflight.problems(require_gpu=True)
    assert len(found) == 1 and "no CUDA GPU is visible" in found[0]


def test_autograde_refuses_before_grading_anyone(tmp_path, monkeypatch):
    course = make_course(tmp_path / "course")
    folder = course / "submitted" / "someone" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(nbformat.read(course / "source" / ASSIGNMENT / NOTEBOOK, as_version=4),
                   folder / NOTEBOOK)
    monkeypatch.setenv("CNN_GRADER_REQUIRE_GPU", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU visible, also on a GPU machine
    result = nbgrader(course, "autograde", ASSIGNMENT)
    assert result.returncode != 0
    assert "cannot grade yet, nobody was graded" in result.stderr + result.stdout
    assert "no CUDA GPU is visible" in result.stderr + result.stdout
    assert not (course / "autograded").exists()


def test_an_unreadable_submission_is_kept_and_replaced_by_a_stand_in(tmp_path):
    released = tmp_path / "release" / ASSIGNMENT / NOTEBOOK
    released.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), released)
    broken = tmp_path / "submitted" / "someone" / ASSIGNMENT / NOTEBOOK
    broken.parent.mkdir(parents=True)
    broken.write_text('{"cells": [')
    fine = tmp_path / "submitted" / "other" / ASSIGNMENT / NOTEBOOK
    fine.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), fine)

    assert set_aside_unreadable(tmp_path, ASSIGNMENT) == [broken]
    assert (broken.parent / f"{NOTEBOOK}.unreadable").read_text() == '{"cells": ['
    stand_in = nbformat.read(broken, as_version=4)
    assert "could not read the notebook" in stand_in.cells[0].source
    assert len(stand_in.cells) == 2
    assert set_aside_unreadable(tmp_path, ASSIGNMENT) == []  # idempotent


def test_the_formgrader_path_checks_each_submission_too(monkeypatch):
    """Formgrader's autograde button skips nbgrader_config.py's command-line check."""
    from cnn_grader.course_preprocessors import Preflight

    monkeypatch.setattr(Preflight, "_ready", False)
    monkeypatch.setattr(preflight, "problems",
                        lambda require_gpu: ["no sandbox here"] + ["no GPU"] * require_gpu)
    with pytest.raises(RuntimeError, match="nobody was graded:\n  - no sandbox here$"):
        Preflight().preprocess(nbformat.v4.new_notebook(), {})
    with pytest.raises(RuntimeError, match="no GPU"):
        Preflight(require_gpu=True).preprocess(nbformat.v4.new_notebook(), {})
    assert not Preflight._ready
    monkeypatch.setattr(preflight, "problems", lambda require_gpu: [])
    notebook = nbformat.v4.new_notebook()
    assert Preflight().preprocess(notebook, {}) == (notebook, {})
    assert Preflight._ready


def test_the_course_runs_preflight_before_anything_else():
    from traitlets.config import Config, PyFileConfigLoader

    config = Config()
    loader = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT / "grader"))
    loader.load_config()
    config.merge(loader.config)
    from cnn_grader.course_preprocessors import Preflight

    assert config.Autograde.sanitize_preprocessors[0] is Preflight
