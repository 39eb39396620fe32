"""The accuracy part's training as a Ray task of its own, with a GPU share that fits the model.

On a Ray cluster with GPUs, ``classrun``'s student tasks ask for no GPU: their kernel,
description and checks are CPU work, so as many students run at once as there are
workers. Before the fan-out, ``probe_device`` asks a GPU task on every GPU node which
device a training task trains on. ``checks.trained`` in a student's nbgrader process
looks the network up in the training cache and holds its lock, as sequential grading
does; only when it must train does it send the request to its student task through a
local socket (``serve``; the address and key are in the nbgrader process's environment,
which the student's sandboxed code never sees). The student task submits
``run_training`` as a Ray task with ``GPU_SHARES[model]`` of a GPU and sends the answer
back, and the nbgrader process stores it. A network the cache knows, or one another
worker is training, holds no GPU.

A failure that is the student's (the grader's recipe cannot train the network) comes
back as their message; anything else is the grader's own error, so no student gets a
zero for it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Client, Listener
from typing import Any

from cnn_grader.environment import gpu_required
from cnn_grader.ray_nodes import run_on_each_node

ADDRESS_ENV = "CNN_GRADER_TRAINING_SOCKET"
AUTHKEY_ENV = "CNN_GRADER_TRAINING_AUTHKEY"
DEVICE_ENV = "CNN_GRADER_TRAINING_DEVICE"  # "cuda" or "cpu": what probe_device found
# Measured (docs/grading-a-class.md, scripts/benchmark_gpu_share.py, H200): two AlexNet
# trainings on one GPU keep 0.99 of one training's throughput, so two share a GPU and a
# student's CPU phases overlap the other's training; VGG16 trains alone.
GPU_SHARES = {"alexnet": 0.5, "vgg16": 1.0}
RETRIES = 2  # a training task whose worker died is run again this many times

log = logging.getLogger(__name__)


def task_options(model: str) -> dict[str, Any]:
    """The Ray resources of training ``model``: its GPU share and no CPU (its student's
    task, blocked until the answer comes, holds the CPU the training loop uses)."""
    try:
        share = GPU_SHARES[model]
    except KeyError:
        raise ValueError(f"no GPU share for model {model!r}; expected one of "
                         f"{', '.join(GPU_SHARES)}") from None
    return {"num_gpus": share, "num_cpus": 0, "max_retries": RETRIES,
            "retry_exceptions": False}


# ----------------------------------------------------------------------------- before the fan-out
def probe_device(ray, profile: str, require_gpu: bool) -> str:
    """The device training tasks train on under ``profile``, as a task with the smallest
    GPU share sees it on every node that can run one: "cuda", or "cpu" where Ray's GPUs
    are logical ones (the tests on a CPU). Raises RuntimeError where such a task could
    not train at all (no CUDA under the profile full or a required GPU: every student
    would be ungraded) or where nodes disagree (entries would be keyed by one device and
    trained on another)."""
    share = min(GPU_SHARES.values())
    answers = run_on_each_node(ray, _training_device, (profile, require_gpu), "GPU", share,
                               num_gpus=share, num_cpus=0)
    if not answers:
        raise RuntimeError(f"no Ray node has {share} of a GPU for a training task")
    problems = [problem for problem, _name, _device in answers if problem]
    devices = {device for problem, _name, device in answers if not problem}
    if not problems and len(devices) > 1:
        problems = ["the GPU nodes' training tasks see different devices: " + ", ".join(
            f"{name} {device}" for _problem, name, device in answers)]
    if problems:
        raise RuntimeError("; ".join(problems))
    return devices.pop()


def _training_device(profile: str, require_gpu: bool) -> tuple[str, str, str]:
    """(why a training task here cannot train, or ""; this node's name; the device)."""
    import torch

    from cnn_grader.hidden_checks import checks

    name = os.uname().nodename
    try:
        device = checks.training_device(profile, torch.cuda.is_available(), require_gpu)
    except RuntimeError as error:
        return f"a Ray task holding a GPU share on {name} cannot train: {error}", name, ""
    return "", name, device.type


# ----------------------------------------------------------------------------- the training task
def run_training(model: str, graph, profile: str, seed: int | None, device: str,
                 require_gpu: bool) -> tuple:
    """``checks.train_once`` in a Ray worker, on ``device`` (the nbgrader process keyed
    its cache entry by it, so a worker that sees another device is the grader's error).
    Returns ("ok", result, seconds, GPUs held) or ("fail", the student's message,
    seconds)."""
    import torch

    import ray
    from cnn_grader.hidden_checks import checks
    from cnn_grader.hidden_checks.recipes import grading_recipe
    from cnn_grader.paper import get_spec

    here = checks.training_device(profile, torch.cuda.is_available(), require_gpu)
    if here.type != device:
        raise RuntimeError(f"the Ray worker on {os.uname().nodename} trains on {here.type}, "
                           f"not on {device} as the run's probe found")
    start = time.perf_counter()
    try:
        result = checks.train_once(get_spec(model), graph, grading_recipe(model, profile),
                                   profile, seed, here)
    except AssertionError as failed:  # checks.fail: the student's, not a crash
        return ("fail", str(failed), time.perf_counter() - start)
    gpus = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    return ("ok", result, time.perf_counter() - start, gpus)


# ----------------------------------------------------------------------------- the student's task
@contextlib.contextmanager
def serve(ray, device: str, train=run_training) -> Iterator[dict[str, str]]:
    """Answer training requests with ``train`` run as a Ray task, while the block runs;
    yields the environment that lets an nbgrader process send them (``request``) and
    says that they train on ``device`` (``probe_device``)."""
    folder = tempfile.mkdtemp(prefix="cnn-training-")
    address = os.path.join(folder, "socket")
    authkey = secrets.token_bytes(32)
    listener = Listener(address, family="AF_UNIX", authkey=authkey)
    remote = ray.remote(train)
    thread = threading.Thread(target=_answer_requests, args=(listener, remote, ray),
                              name="training-requests", daemon=True)
    thread.start()
    try:
        yield {ADDRESS_ENV: address, AUTHKEY_ENV: authkey.hex(), DEVICE_ENV: device}
    finally:
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)


def _answer_requests(listener: Listener, remote, ray) -> None:
    """One request at a time (a student's checks train one network at a time)."""
    while True:
        try:
            connection = listener.accept()
        except (OSError, EOFError):  # closed: the student's grading ended
            return
        with connection:
            try:
                model, *arguments = connection.recv()
                answer = ray.get(remote.options(**task_options(model)).remote(model, *arguments))
            except Exception as error:  # noqa: BLE001 (every failure goes back as the grader's)
                answer = ("error", (ray_error_line(error) or type(error).__name__)[:500])
            with contextlib.suppress(OSError):
                connection.send(answer)


def ray_error_line(error: Exception) -> str:
    """The last non-blank line of ``error``'s text, without terminal colours ("" if none):
    what failed, where a Ray task's error carries its whole coloured traceback."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ----------------------------------------------------------------------------- nbgrader
def configured() -> bool:
    """Whether this process sends its trainings to a Ray task (``serve``'s environment)."""
    return bool(os.environ.get(ADDRESS_ENV))


def probed_device() -> str:
    """The device the Ray tasks train on ("cuda" or "cpu"), as ``serve`` was told."""
    return os.environ.get(DEVICE_ENV, "")


def request(model: str, graph, profile: str, seed: int | None, device: str
            ) -> tuple[float, float, float, float]:
    """Train ``graph`` (the rebuilt (1, 10) network of ``model``) on ``device`` in a Ray
    task, as ``checks.train_once`` would here; adds the training's seconds to this
    process's cache counters."""
    from cnn_grader import training_cache  # imports torch: not where classrun imports this
    from cnn_grader.hidden_checks.checks import fail  # checks imports this module

    start = time.perf_counter()
    authkey = bytes.fromhex(os.environ[AUTHKEY_ENV])
    with Client(os.environ[ADDRESS_ENV], family="AF_UNIX", authkey=authkey) as connection:
        connection.send((model, graph, profile, seed, device, gpu_required()))
        status, *answer = connection.recv()
    if status == "fail":
        message, seconds = answer
        training_cache.add_training(seconds)
        fail(message)
    if status != "ok":
        raise RuntimeError(f"the Ray task training {model} failed: {answer[0]}")
    result, seconds, gpus = answer
    training_cache.add_training(seconds)
    log.info("%s trained in a Ray task holding %g GPU (%.1f s with the wait)", model, gpus,
             time.perf_counter() - start)
    return tuple(result)  # type: ignore[return-value]
