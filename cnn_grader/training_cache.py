"""The accuracy part's training results, cached by the computation that was trained.

``checks.trained`` trains the grader's rebuild of a student's network; most students'
networks compute the same function, so the result is kept in one JSON file per key in
the folder ``CNN_GRADER_CACHE`` names (no caching when it is unset). The key holds what
decides a training run: the canonical text of the rebuilt graph (``canonical``: names,
lines and module classes left out), the grader's and the course package's sources
(``code_version``), the profile, the grading recipe, the seed, the device kind and
torch's version. An entry that does not parse, belongs to another key, fails its
checksum or holds implausible values is ignored (with a warning), and the result is
computed and written again. ``claimed`` holds a lock per key while one process trains,
so that workers that meet the same network at the same moment train it once.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import cnn_course
import cnn_grader
from cnn_grader.netgraph.description import IN_PLACE, KNOWN_BUFFERS, Graph, Ref

if TYPE_CHECKING:  # hidden_checks imports this module: the recipe is a type hint only
    from cnn_grader.hidden_checks.recipes import GradingRecipe

ENV = "CNN_GRADER_CACHE"
SOURCES = (Path(cnn_grader.__file__).resolve().parent, Path(cnn_course.__file__).resolve().parent)
Result = tuple[float, float, float, float]  # loss before, loss after, test accuracy, seconds

log = logging.getLogger(__name__)
hits = 0  # lookups answered from the cache, in this process
misses = 0  # lookups that found nothing usable (the network is trained)
seconds = 0.0  # wall time of the trainings this process ran after its misses


def counts() -> tuple[int, int]:
    """(hits, misses) of this process since the start or the last ``reset``."""
    return hits, misses


def training_seconds() -> float:
    """Seconds this process spent training (``add_training``) since the start or ``reset``."""
    return seconds


def add_training(spent: float) -> None:
    """Count ``spent`` seconds of a training run after a miss."""
    global seconds
    seconds += spent


def reset() -> None:
    """Set the counters back to zero."""
    global hits, misses, seconds
    hits = misses = 0
    seconds = 0.0


# ----------------------------------------------------------------------------- the key
def canonical(graph: Graph) -> str:
    """The computation ``graph`` describes, as text without the student's names.

    Nodes, parameters and buffers are named by position (n0, p0, b0, ...); a parameter
    keeps its shape and whether it is a bias (``checks.reinit`` fills 1-d biases with
    zeros), a buffer its shape and the statistic it holds (what the rebuild fills it
    with). Module paths and classes, recorded shapes and source lines are left out."""
    nodes = {node.name: f"n{i}" for i, node in enumerate(graph.nodes)}
    index = {name: i for i, (name, _shape) in enumerate(graph.params)}
    params = {name: f"p{i}" for name, i in index.items()}
    buffers = {name: f"b{i}" for i, (name, _shape) in enumerate(graph.buffers)}
    renamed = {"node": nodes, "param": params, "buffer": buffers, "input": {"x": "x"}}

    def plain(value: Any) -> Any:
        if isinstance(value, Ref):
            return {value.kind: renamed[value.kind][value.name]}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    def statistic(name: str) -> list:
        leaf = name.rsplit(".", 1)[-1]
        return [leaf if leaf in KNOWN_BUFFERS else "", name.endswith("num_batches_tracked")]

    return json.dumps({
        "in_channels": graph.in_channels, "num_classes": graph.num_classes, "size": graph.size,
        "params": [[list(shape), name.endswith("bias")] for name, shape in graph.params],
        "frozen": sorted(index[name] for name in graph.frozen),
        "buffers": [[list(shape), *statistic(name)] for name, shape in graph.buffers],
        # in-place forms (relu_) run as their out-of-place ones in the rebuild
        "nodes": [[IN_PLACE.get(node.op, node.op), plain(node.args),
                   [[k, plain(v)] for k, v in node.kwargs]]
                  for node in graph.nodes],
        "output": plain(graph.output),
    }, separators=(",", ":"))


@functools.cache
def code_version() -> str:
    """sha256 over every ``*.py`` file of the grader's and the course's packages, read
    once per process (at its first training: the code it runs, even if edited later)."""
    digest = hashlib.sha256()
    files = sorted((path.relative_to(root.parent).as_posix(), path)
                   for root in SOURCES for path in root.rglob("*.py"))
    for relative, path in files:
        data = path.read_bytes()
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def key(graph: Graph, model: str, profile: str, plan: GradingRecipe, seed: int | None,
        device: str) -> str:
    """The cache key of training ``graph`` for ``model`` under ``profile`` with ``plan``
    (the grading recipe), ``seed`` (None: the recipe's, which trains alike and so gets
    the same key) on ``device`` ("cuda"/"cpu")."""
    recipe = repr([(f.name, getattr(plan, f.name)) for f in fields(plan)])
    seed = plan.recipe.seed if seed is None else seed
    parts = [canonical(graph), code_version(), model, profile, recipe, repr(seed), device,
             torch.__version__]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


# ----------------------------------------------------------------------------- storage
def _folder() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def _checksum(key: str, result: list[float]) -> str:
    return hashlib.sha256(json.dumps([key, result]).encode()).hexdigest()


def _plausible(result: Any) -> bool:
    """Four finite floats, the accuracy in [0, 1] and the seconds >= 0."""
    return (isinstance(result, (list, tuple)) and len(result) == 4
            and all(isinstance(v, float) and math.isfinite(v) for v in result)
            and 0.0 <= result[2] <= 1.0 and result[3] >= 0.0)


def _read(path: Path, wanted: str) -> Result | None:
    """The entry at ``path`` if it is ``wanted``'s and sound; None (with a warning) else."""
    try:
        entry = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as error:  # unreadable, not UTF-8, not JSON
        log.warning("training cache: ignoring %s (%s)", path, error)
        return None
    if not isinstance(entry, dict) or set(entry) != {"key", "result", "checksum"}:
        problem = "not a cache entry"
    elif entry["key"] != wanted:
        problem = "the entry of another key"
    elif entry["checksum"] != _checksum(entry["key"], entry["result"]):
        problem = "checksum mismatch"
    elif not _plausible(entry["result"]):
        problem = f"implausible values {str(entry['result'])[:100]}"
    else:
        return tuple(entry["result"])  # type: ignore[return-value]
    log.warning("training cache: ignoring %s (%s)", path, problem)
    return None


def lookup(key: str) -> Result | None:
    """The stored result of ``key``, or None (no folder configured, no sound entry);
    counts a hit or a miss."""
    global hits, misses
    folder = _folder()
    result = _read(folder / f"{key}.json", key) if folder else None
    if result is None:
        misses += 1
    else:
        hits += 1
    return result


def store(key: str, result: Result) -> None:
    """Write ``result`` as ``key``'s entry, atomically (nothing without a folder; a result
    that would not pass ``lookup``'s checks, e.g. a diverged loss, is not stored)."""
    folder = _folder()
    values = [float(v) for v in result]
    if folder is None or not _plausible(values):
        return
    entry = {"key": key, "result": values, "checksum": _checksum(key, values)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(entry, file)
            os.chmod(temporary, 0o644)  # a shared folder serves other users' workers too
            os.replace(temporary, folder / f"{key}.json")
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        log.warning("training cache: could not write %s (%s)", folder / f"{key}.json", error)


@contextlib.contextmanager
def claimed(key: str) -> Iterator[Result | None]:
    """``lookup(key)`` while holding the key's lock: yields the stored result, or None
    and keeps the lock until the block ends, so the caller trains and ``store``s while
    other processes asking for the same key wait, then read its entry.

    The lock is ``flock`` on ``.<key>.lock`` in the cache folder: the kernel releases it
    when its holder dies, so a killed worker's key is trained again by the next one.
    Without a folder, or where the lock file cannot be opened, nothing is locked."""
    folder = _folder()
    handle = None
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / f".{key}.lock", "a")  # noqa: SIM115 (closed below)
        except OSError as error:
            log.warning("training cache: training %s unlocked (%s)", key[:12], error)
        else:
            with contextlib.suppress(OSError):  # another user's file: theirs to share
                os.chmod(handle.name, 0o666)  # other users' workers share the folder
    try:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield lookup(key)
    finally:
        if handle is not None:
            handle.close()  # closing releases the lock
