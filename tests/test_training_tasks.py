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
from types import SimpleNamespace

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


def test_a_training_the_student_cannot_pass_returns_their_message(monkeypatch):
    # kills: the check's AssertionError left to Ray, which would make it the grader's
    # crash (the student ungraded) instead of the student's feedback
    def broken(*args, **kwargs):
        raise ValueError("shapes do not match")
    monkeypatch.setattr(checks, "fit", broken)
    status, message, seconds = training_tasks.run_training("vgg16", small(Tiny), "ci", None,
                                                           "cpu", False)
    assert status == "fail" and "raised ValueError: shapes do not match" in message
    assert seconds > 0


def test_a_worker_that_trains_elsewhere_than_the_probe_found_is_the_graders_error(monkeypatch):
    # kills: a task that trains on its own device (its result stored under the key of
    # another device), a required GPU not checked in the task
    monkeypatch.setattr(checks, "fit", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(RuntimeError, match="trains on cpu, not on cuda as the run's probe"):
        training_tasks.run_training("alexnet", small(Tiny), "ci", None, "cuda", False)
    with pytest.raises(RuntimeError, match="CNN_GRADER_REQUIRE_GPU is set"):
        training_tasks.run_training("alexnet", small(Tiny), "ci", None, "cpu", True)
    with pytest.raises(RuntimeError, match="full grading profile needs a CUDA GPU"):
        training_tasks.run_training("alexnet", small(Tiny), "full", None, "cpu", False)


@pytest.fixture
def sending(tmp_path, monkeypatch):
    """An nbgrader process configured to send its trainings (the socket is never used:
    ``request`` is replaced), with a cache folder; yields the list of what it sent."""
    sent = []
    monkeypatch.setenv(training_cache.ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(training_tasks.ADDRESS_ENV, "/nowhere/socket")
    monkeypatch.setenv(training_tasks.DEVICE_ENV, "cpu")
    monkeypatch.setattr(training_tasks, "request",
                        lambda *args: sent.append(args) or (2.0, 1.0, 0.5, 3.0))
    monkeypatch.setattr(checks, "fit", lambda *a, **k: pytest.fail("trained in the process"))
    training_cache.reset()
    yield sent
    training_cache.reset()


def test_the_checks_send_only_what_the_cache_does_not_know(sending, monkeypatch):
    # kills: the dispatch left out of checks.trained (under classrun on GPUs the network
    # would train in the student's process, on a GPU share it does not hold); a lookup
    # left to the Ray task (a known network, or one another worker trains, would wait
    # for and hold a GPU share); the answer not stored here
    assert checks.trained(VGG, small(Tiny), "ci", 3) == (2.0, 1.0, 0.5, 3.0)
    assert sending == [("vgg16", small(Tiny), "ci", 3, "cpu")]
    assert checks.trained(VGG, small(Tiny), "ci", 3) == (2.0, 1.0, 0.5, 3.0)
    assert len(sending) == 1 and training_cache.counts() == (1, 1)

    monkeypatch.delenv(training_tasks.ADDRESS_ENV)  # sequential grading reads the entry
    assert checks.trained(VGG, small(Tiny), "ci", 3) == (2.0, 1.0, 0.5, 3.0)


def test_the_probed_device_keys_and_gates_what_the_checks_send(sending, monkeypatch):
    # kills: the key's device taken from this process (which holds no GPU) instead of the
    # training tasks'; the GPU requirement skipped when the training is sent
    monkeypatch.setenv(training_tasks.DEVICE_ENV, "cuda")
    checks.trained(VGG, small(Tiny), "full")
    assert sending[-1][-1] == "cuda"
    monkeypatch.setenv(training_tasks.DEVICE_ENV, "cpu")
    with pytest.raises(RuntimeError, match="full grading profile needs a CUDA GPU"):
        checks.trained(VGG, small(Tiny), "full")  # refused before any lookup or request
    assert len(sending) == 1


def test_serve_tells_the_nbgrader_process_where_its_trainings_run():
    # kills: the device left out of serve's environment (the checks would key and gate
    # every training as the CPU's: on a GPU cluster the profile full would refuse them all)
    stand_in = SimpleNamespace(remote=lambda function: function)  # Ray is not reached
    with training_tasks.serve(stand_in, "cuda") as environment:
        assert environment[training_tasks.DEVICE_ENV] == "cuda"
        assert os.path.exists(environment[training_tasks.ADDRESS_ENV])
    assert not os.path.exists(environment[training_tasks.ADDRESS_ENV])


class StandInRay:
    """Enough of Ray for ``probe_device``: its nodes, and each node's probe answer."""

    def __init__(self, nodes: list[dict], answers: dict[str, tuple[str, str, str]]):
        self._nodes, self.answers, self.options = nodes, answers, []

    def nodes(self) -> list[dict]:
        return self._nodes

    def remote(self, function):
        def options(scheduling_strategy, **given):
            self.options.append(given)
            name = bytes.fromhex(scheduling_strategy.node_id).rstrip(b"\0").decode()
            return SimpleNamespace(remote=lambda *a: self.answers[name])
        return SimpleNamespace(options=options)

    def get(self, refs):
        return refs


def node(name: str, gpus: float, alive: bool = True) -> dict:
    """A node as ``ray.nodes()`` lists it; its ID (28 bytes in hex, as Ray wants) spells
    ``name``."""
    return {"NodeID": name.encode().ljust(28, b"\0").hex(), "Alive": alive,
            "Resources": {"CPU": 16.0, "GPU": gpus}}


def test_the_probe_asks_every_gpu_node_and_refuses_nodes_that_disagree():
    # kills: one node probed for all (a node whose tasks see no CUDA would fail its
    # students one by one), nodes without half a GPU or dead ones probed (the run would
    # wait for ever), the probe's share not asked for, disagreeing devices let through
    nodes = [node("a", 1), node("b", 2), node("cpu-only", 0), node("gone", 1, alive=False),
             node("sliver", 0.25)]
    agree = StandInRay(nodes, {"a": ("", "a", "cuda"), "b": ("", "b", "cuda")})
    assert training_tasks.probe_device(agree, "full", True) == "cuda"
    assert [o["num_gpus"] for o in agree.options] == [0.5, 0.5]
    split = StandInRay(nodes, {"a": ("", "a", "cuda"), "b": ("", "b", "cpu")})
    with pytest.raises(RuntimeError, match="see different devices: a cuda, b cpu"):
        training_tasks.probe_device(split, "ci", False)
    broken = StandInRay(nodes, {"a": ("", "a", "cuda"), "b": ("b cannot train", "b", "")})
    with pytest.raises(RuntimeError, match="^b cannot train$"):
        training_tasks.probe_device(broken, "full", False)
    with pytest.raises(RuntimeError, match="no Ray node has 0.5 of a GPU"):
        training_tasks.probe_device(StandInRay(nodes[2:], {}), "full", False)


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
        for name, value in stack.enter_context(training_tasks.serve(ray_with_a_gpu, "cpu",
                                                                    train)).items():
            monkeypatch.setenv(name, value)
        return stack
    training_cache.reset()
    yield start
    training_cache.reset()


@pytest.mark.slow
@pytest.mark.integration
def test_the_probe_finds_the_device_a_gpu_task_trains_on(ray_with_a_gpu):
    # kills: "cuda" assumed wherever Ray has GPUs (here the GPU is a logical one, and
    # every task would refuse to train as the grader's error); a probe that does not
    # gate (a GPU task without CUDA under full would leave every student ungraded, one
    # kernel run after another, instead of refusing the run before it starts)
    assert training_tasks.probe_device(ray_with_a_gpu, "ci", False) == "cpu"
    with pytest.raises(RuntimeError, match="GPU share on .* cannot train: the full grading "
                                           "profile needs a CUDA GPU"):
        training_tasks.probe_device(ray_with_a_gpu, "full", False)
    with pytest.raises(RuntimeError, match="cannot train: CNN_GRADER_REQUIRE_GPU is set"):
        training_tasks.probe_device(ray_with_a_gpu, "ci", True)


@pytest.mark.slow
@pytest.mark.integration
def test_a_sent_training_writes_the_entry_that_sequential_grading_reads(
        served, tmp_path, monkeypatch, caplog):
    # kills: a Ray task that trains something else than sequential grading does; the
    # counters of the nbgrader process left untouched (its INFO line would say 0 trained)
    monkeypatch.setenv(training_cache.ENV, str(tmp_path / "cache"))
    with served(), caplog.at_level(logging.INFO, logger=training_tasks.log.name):
        sent = checks.trained(VGG, small(Tiny), "ci")
        assert training_cache.counts() == (0, 1) and training_cache.training_seconds() > 0
        assert checks.trained(VGG, small(Tiny), "ci") == sent  # now from the cache
        assert training_cache.counts() == (1, 1)
    assert caplog.text.count("vgg16 trained in a Ray task holding 1 GPU") == 1, caplog.text

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
    # the seconds of a training (failed or not) left out of the counters
    import fake_training

    with served(fake_training.student_fails):
        with pytest.raises(AssertionError, match="vgg16 could not be trained"):
            training_tasks.request("vgg16", small(Tiny), "ci", None, "cpu")
    assert training_cache.training_seconds() == 1.5
    with served(fake_training.grader_raises):
        with pytest.raises(RuntimeError, match="training alexnet failed: ValueError: the grader's own bug$"):
            training_tasks.request("alexnet", small(Tiny), "ci", None, "cpu")
    with served(fake_training.worker_dies):
        with pytest.raises(RuntimeError, match="training vgg16 failed"):
            training_tasks.request("vgg16", str(tmp_path), "ci", None, "cpu")
    assert (tmp_path / "attempts").read_text().count("1") == training_tasks.RETRIES + 1
    with served(fake_training.echoes):
        assert training_tasks.request("alexnet", small(Tiny), "ci", 7, "cpu")[3] == 7.0
        assert training_cache.training_seconds() == 1.5 + 2.5


@pytest.mark.slow
@pytest.mark.integration
def test_each_training_task_holds_its_models_share(ray_with_a_gpu):
    # kills: the options not passed to Ray (every training would hold no GPU)
    import fake_training

    remote = ray_with_a_gpu.remote(fake_training.echoes)
    answers = ray_with_a_gpu.get([
        remote.options(**training_tasks.task_options(model)).remote(model, (), "ci", None,
                                                                   "cpu", False)
        for model in ("alexnet", "alexnet", "vgg16")])
    assert [answer[3] for answer in answers] == [0.5, 0.5, 1.0]
