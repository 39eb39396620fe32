"""The accuracy part's training as a Ray task of its own, with a GPU share that fits the model.

On a Ray cluster with GPUs, ``classrun``'s student tasks ask for no GPU: their kernel,
description and checks are CPU work, so as many students run at once as there are
workers. When the checks of a student must train a network (``checks.trained``), the
nbgrader process sends the request to its student task through a local socket
(``serve``; the address and key are in the nbgrader process's environment, which the
student's sandboxed code never sees). The student task submits ``run_training`` as a
Ray task with ``GPU_SHARES[model]`` of a GPU and sends the answer back.

``run_training`` calls the very ``checks.trained`` that sequential grading calls, with
the same cache folder: the same key, the same lock, the same entry. A network the
cache knows costs no GPU time; a failure that is the student's (the grader's recipe
cannot train the network) comes back as their message; anything else is the grader's
own error, so no student gets a zero for it.
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

from cnn_grader.environment import REQUIRE_GPU_ENV, environment_set

ADDRESS_ENV = "CNN_GRADER_TRAINING_SOCKET"
AUTHKEY_ENV = "CNN_GRADER_TRAINING_AUTHKEY"
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


# ----------------------------------------------------------------------------- the training task
def run_training(model: str, graph, profile: str, seed: int | None, cache: str,
                 require_gpu: bool) -> tuple:
    """``checks.trained`` in a Ray worker, with the nbgrader process's cache folder and GPU
    requirement. Returns ("ok", result, cached, seconds trained, GPUs held) or ("fail",
    the student's message)."""
    from cnn_grader import training_cache
    from cnn_grader.hidden_checks import checks
    from cnn_grader.paper import get_spec

    import ray

    wanted = {training_cache.ENV: cache, REQUIRE_GPU_ENV: "1" if require_gpu else "",
              ADDRESS_ENV: ""}  # here the training runs, it is not sent on
    with environment_set(wanted):
        hits, _misses = training_cache.counts()
        spent = training_cache.training_seconds()
        try:
            result = checks.trained(get_spec(model), graph, profile, seed)
        except AssertionError as failed:  # checks.fail: the student's, not a crash
            return ("fail", str(failed))
        cached = training_cache.counts()[0] > hits
        gpus = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
        return ("ok", result, cached, training_cache.training_seconds() - spent, gpus)


# ----------------------------------------------------------------------------- the student's task
@contextlib.contextmanager
def serve(ray, train=run_training) -> Iterator[dict[str, str]]:
    """Answer training requests with ``train`` run as a Ray task, while the block runs;
    yields the environment that lets an nbgrader process send them (``request``)."""
    folder = tempfile.mkdtemp(prefix="cnn-training-")
    address = os.path.join(folder, "socket")
    authkey = secrets.token_bytes(32)
    listener = Listener(address, family="AF_UNIX", authkey=authkey)
    remote = ray.remote(train)
    thread = threading.Thread(target=_answer_requests, args=(listener, remote, ray),
                              name="training-requests", daemon=True)
    thread.start()
    try:
        yield {ADDRESS_ENV: address, AUTHKEY_ENV: authkey.hex()}
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


def request(model: str, graph, profile: str, seed: int | None) -> tuple[float, float, float, float]:
    """Train ``graph`` (the rebuilt (1, 10) network of ``model``) in a Ray task, as
    ``checks.trained`` would here; counts the answer in this process's cache counters."""
    from cnn_grader import training_cache  # imports torch: not where classrun imports this
    from cnn_grader.environment import gpu_required
    from cnn_grader.hidden_checks.checks import fail  # checks imports this module

    start = time.perf_counter()
    authkey = bytes.fromhex(os.environ[AUTHKEY_ENV])
    with Client(os.environ[ADDRESS_ENV], family="AF_UNIX", authkey=authkey) as connection:
        connection.send((model, graph, profile, seed, os.environ.get(training_cache.ENV, ""),
                         gpu_required()))
        status, *answer = connection.recv()
    if status == "fail":
        fail(answer[0])
    if status != "ok":
        raise RuntimeError(f"the Ray task training {model} failed: {answer[0]}")
    result, cached, seconds, gpus = answer
    training_cache.record(cached, seconds)
    log.info("%s %s in a Ray task holding %g GPU (%.1f s with the wait)", model,
             "read from the cache" if cached else "trained", gpus, time.perf_counter() - start)
    return tuple(result)  # type: ignore[return-value]
