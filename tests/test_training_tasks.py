"""The accuracy part's training as a Ray task with the model's GPU share
(cnn_grader/training_tasks.py, issue 14): the share each model asks for, the answer that
comes back for each way a training can end, and the cache entry that sequential grading
reads. Ray runs here with one logical GPU: what the tasks are given, not how fast they
train, is under test (the shares were measured on an H200: docs/grading-a-class.md).

Every test names, in a comment, the wrong implementation it catches.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

from cnn_grader import training_cache, training_tasks
from cnn_grader.hidden_checks import checks
from test_training_cache import VGG, Tiny, small

ROOT = Path(__file__).resolve().parent.parent
FAKES = ROOT / "tests" / "fakes"  # fake_training.py: stand-ins for run_training


def test_each_model_asks_for_its_measured_gpu_share():
    # kills: one share for every model (VGG16 beside another training), a CPU asked for
    # (a class whose workers hold every CPU would wait for ever), an unknown model let through
    assert training_tasks.task_options("alexnet")["num_gpus"] == 0.5
    assert training_tasks.task_options("vgg16")["num_gpus"] == 1.0
    assert {training_tasks.task_options(m)["num_cpus"] for m in ("alexnet", "vgg16")} == {0}
    with pytest.raises(ValueError, match="no GPU share for model 'lenet'"):
        training_tasks.task_options("lenet")


def test_a_training_the_student_cannot_pass_returns_their_message(tmp_path, monkeypatch):
    # kills: the check's AssertionError left to Ray, which would make it the grader's
    # crash (the student ungraded) instead of the student's feedback
    def broken(*args, **kwargs):
        raise ValueError("shapes do not match")
    monkeypatch.setattr(checks, "fit", broken)
    monkeypatch.setenv(training_cache.ENV, "/somewhere/else")
    monkeypatch.delenv(training_tasks.ADDRESS_ENV, raising=False)
    status, message = training_tasks.run_training("vgg16", small(Tiny), "ci", None,
                                                  str(tmp_path), False)
    assert status == "fail" and "raised ValueError: shapes do not match" in message
    # the worker's environment as it was before the task (the next task is another's)
    assert os.environ[training_cache.ENV] == "/somewhere/else"
    assert training_tasks.ADDRESS_ENV not in os.environ


def test_the_checks_send_their_training_when_a_socket_is_configured(monkeypatch):
    # kills: the dispatch left out of checks.trained (under classrun on GPUs the network
    # would train in the student's process, on a GPU share it does not hold)
    sent = []
    monkeypatch.setenv(training_tasks.ADDRESS_ENV, "/nowhere/socket")
    monkeypatch.setattr(training_tasks, "request",
                        lambda *args: sent.append(args) or (2.0, 1.0, 0.5, 3.0))
    monkeypatch.setattr(checks, "fit", lambda *a, **k: pytest.fail("trained in the process"))
    assert checks.trained(VGG, small(Tiny), "ci", 3) == (2.0, 1.0, 0.5, 3.0)
    assert sent == [("vgg16", small(Tiny), "ci", 3)]


# ----------------------------------------------------------------------------- on Ray
@pytest.fixture(scope="module")
def ray_with_a_gpu():
    """Ray on this machine with 2 CPUs and one (logical) GPU; its workers import the
    stand-ins of tests/fakes."""
    from cnn_grader import classrun

    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_TMPDIR", tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short socket paths
    patch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(FAKES)]))
    patch.delenv("RAY_ADDRESS", raising=False)
    patch.syspath_prepend(str(FAKES))
    ray = classrun.start_ray(None, 2, gpus=1)
    yield ray
    ray.shutdown()
    patch.undo()


@pytest.fixture
def served(ray_with_a_gpu, monkeypatch):
    """``serve`` with a training function of tests/fakes/fake_training.py (or the real
    one), its environment set in this process as in an nbgrader process."""
    def start(train=training_tasks.run_training):
        import contextlib

        stack = contextlib.ExitStack()
        for name, value in stack.enter_context(training_tasks.serve(ray_with_a_gpu,
                                                                    train)).items():
            monkeypatch.setenv(name, value)
        return stack
    training_cache.reset()
    yield start
    training_cache.reset()


@pytest.mark.slow
@pytest.mark.integration
def test_a_sent_training_writes_the_entry_that_sequential_grading_reads(
        served, tmp_path, monkeypatch, caplog):
    # kills: a Ray task that trains under another key (another cache folder, another
    # profile or seed) or trains something else than sequential grading does; counters
    # of the nbgrader process left untouched (its INFO line would say 0 trained)
    monkeypatch.setenv(training_cache.ENV, str(tmp_path / "cache"))
    with served(), caplog.at_level(logging.INFO, logger=training_tasks.log.name):
        sent = checks.trained(VGG, small(Tiny), "ci")
        assert training_cache.counts() == (0, 1) and training_cache.training_seconds() > 0
        assert checks.trained(VGG, small(Tiny), "ci") == sent  # now from the cache
        assert training_cache.counts() == (1, 1)
    assert "vgg16 trained in a Ray task holding 1 GPU" in caplog.text
    assert "vgg16 read from the cache in a Ray task holding 1 GPU" in caplog.text

    monkeypatch.delenv(training_tasks.ADDRESS_ENV)  # sequential grading, same folder
    monkeypatch.setattr(checks, "fit", lambda *a, **k: pytest.fail("trained again"))
    assert checks.trained(VGG, small(Tiny), "ci") == sent
    monkeypatch.undo()
    monkeypatch.setenv(training_cache.ENV, str(tmp_path / "fresh"))  # trained here
    here = checks.trained(VGG, small(Tiny), "ci")
    assert here[:3] == pytest.approx(sent[:3], rel=1e-4, abs=1e-4)


@pytest.mark.slow
@pytest.mark.integration
def test_each_way_a_training_task_ends_reaches_the_nbgrader_process(served, tmp_path):
    # kills: the student's message turned into a grader error (or dropped), a grader error
    # or a dead worker reported as the student's failure, no retry of a dead worker,
    # every model given the same GPU share, the cached flag lost on the way back
    import fake_training

    with served(fake_training.student_fails):
        with pytest.raises(AssertionError, match="vgg16 could not be trained"):
            training_tasks.request("vgg16", small(Tiny), "ci", None)
    with served(fake_training.grader_raises):
        with pytest.raises(RuntimeError, match="training alexnet failed: ValueError: the grader's own bug$"):
            training_tasks.request("alexnet", small(Tiny), "ci", None)
    os.environ[training_cache.ENV] = str(tmp_path)
    try:
        with served(fake_training.worker_dies):
            with pytest.raises(RuntimeError, match="training vgg16 failed"):
                training_tasks.request("vgg16", small(Tiny), "ci", None)
    finally:
        del os.environ[training_cache.ENV]
    assert (tmp_path / "attempts").read_text().count("1") == training_tasks.RETRIES + 1
    with served(fake_training.echoes):
        assert training_tasks.request("alexnet", small(Tiny), "ci", 7)[3] == 7.0
        assert training_cache.counts() == (0, 1) and training_cache.training_seconds() == 2.5
        training_tasks.request("vgg16", small(Tiny), "cached", None)
        assert training_cache.counts() == (1, 1)


@pytest.mark.slow
@pytest.mark.integration
def test_each_training_task_holds_its_models_share(ray_with_a_gpu):
    # kills: the options not passed to Ray (every training would hold no GPU)
    import fake_training

    remote = ray_with_a_gpu.remote(fake_training.echoes)
    answers = ray_with_a_gpu.get([
        remote.options(**training_tasks.task_options(model)).remote(model, (), "ci", None, "",
                                                                   False)
        for model in ("alexnet", "alexnet", "vgg16")])
    assert [answer[4] for answer in answers] == [0.5, 0.5, 1.0]
