"""Describe a submission's networks in the sandbox (trusted side of describe_child.py).

``describe_submission(notebook, profile)`` takes the notebook's code cells in order up
to the last model cell, leaving out the graded test cells, runs them in a sandboxed
process (no network, limited memory, CPU time, file size and wall time; the grader's
files are not visible there) and returns, per model, its validated graphs or the reason
there are none. When the process dies in some cell (a hang, ``os._exit``, a crash, a
memory hog) before every model is described, the run is repeated without that cell,
so that one broken cell costs only the models that need it.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cnn_course import get_profile

from cnn_grader.netgraph.description import DescriptionError, Graph, Inventory, load_graph, load_inventory
from cnn_grader.sandbox import (
    HANDED_IN, Limits, Outcome, in_scratch_copy, run_sandboxed, sandbox_disabled,
)

HERE = Path(__file__).resolve().parent
CHILD = HERE / "describe_child.py"
MODELS = {"alexnet": ("AlexNet", "alexnet_model", 227), "vgg16": ("VGG16", "vgg16_model", 224)}
MAX_EVENTS_BYTES = 4 * 2**20  # the largest output file the trusted side reads
MAX_RETRIES = 3
MAX_FILE_BYTES, MAX_FOLDER_BYTES = 64 * 2**20, 256 * 2**20  # what the snapshot copies


Config = tuple[int, int, int]  # (in_channels, num_classes, image side)


@dataclass
class ModelResult:
    """What the sandbox produced for one model: what its constructor built per
    (in_channels, num_classes), and per configuration a graph or why there is none.
    ``problem`` is set when nothing is known (no class, a failing constructor, a crash)."""

    inventories: dict[tuple[int, int], Inventory] = field(default_factory=dict)
    graphs: dict[Config, Graph] = field(default_factory=dict)
    errors: dict[Config, str] = field(default_factory=dict)
    problem: str | None = None

    def fingerprint(self) -> str:
        """The whole result as text: equal results are equal networks."""
        return repr((self.problem, sorted(self.inventories.items()), sorted(self.graphs.items()),
                     sorted(self.errors.items())))


def model_configs(key: str, profile: str) -> list[dict]:
    """What the sandbox describes of a model: (3, 1000) and (1, 10) at the paper's size,
    and (1, 10) at the profile's training size (once, where that is the paper's)."""
    _class, _grade_id, paper = MODELS[key]
    train = get_profile(profile).image_size(key)
    configs = [(3, 1000, paper), (1, 10, paper)] + ([(1, 10, train)] if train != paper else [])
    return [{"in_channels": c, "num_classes": k, "size": s} for c, k, s in configs]


def _nbgrader(cell: Any) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _is_test_cell(cell: Any) -> bool:
    meta = _nbgrader(cell)
    return bool(meta.get("grade")) and not meta.get("solution")


def _course_check(cell: Any) -> bool:
    """A locked cell of the course that is no model cell (tables, sanity checks, tests)."""
    meta = _nbgrader(cell)
    return bool(meta.get("locked")) and not meta.get("solution")


def build_job(cells: list[Any], profile: str) -> dict:
    """The sandbox's job: the code cells to run and when to describe which model.

    Left out: the graded test cells, and after the first model cell the course's own
    locked cells (layer tables, sanity checks), which only use the classes.
    """
    model_ids = {grade_id for _class, grade_id, _size in MODELS.values()}
    first = next((i for i, c in enumerate(cells) if _nbgrader(c).get("grade_id") in model_ids),
                 len(cells))
    code = [c for i, c in enumerate(cells) if c.get("cell_type") == "code"
            and not _is_test_cell(c) and not (i > first and _course_check(c))]
    where = {_nbgrader(c).get("grade_id"): i for i, c in enumerate(code)}
    models = []
    for key, (class_name, grade_id, paper_size) in MODELS.items():
        if grade_id not in where:
            continue
        models.append({"key": key, "class_name": class_name, "after_cell": where[grade_id],
                       "configs": model_configs(key, profile)})
    last = max((m["after_cell"] for m in models), default=-1)
    sources = [c.get("source", "") for c in code[:last + 1]]
    return {"cells": ["".join(s) if isinstance(s, list) else s for s in sources],
            "models": models}


def _read_events(path: Path) -> list[dict]:
    """The events the child wrote; anything malformed ends the list. The child's code could
    have replaced the file: a link is not followed, and only a regular file is read (a
    FIFO would block, a device never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # missing, or a link
        return []
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        raw = handle.read(MAX_EVENTS_BYTES + 1)
    events = []
    for line in raw[:MAX_EVENTS_BYTES].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            break
        if not isinstance(event, dict):
            break
        events.append(event)
    return events


def model_result(event: dict) -> ModelResult:
    """Validate a ``model``/``model_error`` event holding a whole model (untrusted data)."""
    if event.get("event") == "model_error":
        return ModelResult(problem=str(event.get("message", "building the network failed"))[:800])
    result = ModelResult()
    if not (_add_inventories(result, event.get("inventories"))
            and isinstance(event.get("configs"), list) and len(event["configs"]) <= 4
            and all(_add_config(result, data) for data in event["configs"])):
        return ModelResult(problem="the description of the network is malformed")
    return result


def _add_inventories(result: ModelResult, inventories: Any) -> bool:
    if not (isinstance(inventories, list) and 1 <= len(inventories) <= 2):
        return False
    try:
        for data in inventories:
            inventory = load_inventory(data)
            result.inventories[(inventory.in_channels, inventory.num_classes)] = inventory
    except DescriptionError as error:
        result.problem = str(error)
    return True


def _add_config(result: ModelResult, data: Any) -> bool:
    if not isinstance(data, dict) or not all(
            type(data.get(k)) is int for k in ("in_channels", "num_classes", "size")):
        return False
    config = (data["in_channels"], data["num_classes"], data["size"])
    if "error" in data:
        result.errors[config] = str(data["error"])[:800]
        return True
    try:
        result.graphs[config] = load_graph(data)
    except DescriptionError as error:
        result.errors[config] = str(error)
    return True


class _Collector:
    """Builds each model's result from the child's events, as they come."""

    def __init__(self) -> None:
        self.partial: dict[str, ModelResult] = {}
        self.done: dict[str, ModelResult] = {}

    def add(self, event: dict) -> None:
        key, kind = event.get("key"), event.get("event")
        if key not in MODELS or key in self.done:
            return
        if kind == "model_error":
            self.done[key] = model_result(event)
        elif kind == "inventory" and key not in self.partial:
            self.partial[key] = ModelResult()
            if not _add_inventories(self.partial[key], event.get("inventories")):
                self.done[key] = ModelResult(problem="the description of the network is malformed")
        elif kind == "config" and key in self.partial:
            if len(self.partial[key].graphs) + len(self.partial[key].errors) >= 4 or \
                    not _add_config(self.partial[key], event.get("config")):
                self.done[key] = ModelResult(problem="the description of the network is malformed")
        elif kind == "model" and key in self.partial:
            self.done[key] = self.partial[key]

    def stopped(self, key: str, configs: list[dict], why: str) -> ModelResult | None:
        """The result of a model whose describing was cut short, if its constructor ran."""
        result = self.partial.get(key)
        if result is None or result.problem:
            return None
        for config in configs:
            triple = (config["in_channels"], config["num_classes"], config["size"])
            if triple not in result.graphs and triple not in result.errors:
                result.errors[triple] = (
                    f"{MODELS[key][0]}(in_channels={triple[0]}, num_classes={triple[1]}) on a "
                    f"batch of {triple[2]}x{triple[2]} images: running its forward() in "
                    f"training mode {why}")
        return result


def _sandbox_env(profile: str) -> dict[str, str]:
    keep = {k: os.environ[k] for k in ("CNN_COURSE_DATA",) if k in os.environ}
    return {**keep, "CNN_COURSE_PROFILE": profile, "NBGRADER_EXECUTION": "autograde",
            "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}


def visible_paths() -> list[Path]:
    """What sandboxed code may read besides the system: the venv, the helper package and
    the data (the kernel too, without this folder's describe_child.py)."""
    import cnn_course
    from cnn_course.data import default_data_root

    paths = [Path(sys.prefix), Path(cnn_course.__file__).resolve().parent]
    data = default_data_root()
    if data.exists():
        paths.append(data)
    return paths


def snapshot(folder: Path, into: Path) -> Path:
    """Copy the notebook's folder (files up to ``MAX_FILE_BYTES``, ``MAX_FOLDER_BYTES`` in
    all) into ``into``, so that the describing process sees the files submitted beside the
    notebook as they were, whatever the kernel writes there meanwhile."""
    copy = into / "notebook"
    copy.mkdir()
    total = 0
    for source in sorted(folder.rglob("*")):
        if source.is_symlink() or not source.is_file():
            continue
        size = source.stat().st_size
        if size > MAX_FILE_BYTES or total + size > MAX_FOLDER_BYTES:
            continue
        total += size
        target = copy / source.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return copy


def _run_once(job: dict, profile: str, limits: Limits, folder: Path | None,
              copy: Path | None) -> tuple[list[dict], Outcome]:
    with tempfile.TemporaryDirectory(prefix="cnn-describe-") as scratch:
        work = Path(scratch)
        (work / "job.json").write_text(json.dumps(job))
        events = work / "events.jsonl"
        argv = [sys.executable, str(CHILD), str(work / "job.json"), str(events)]
        mounts: dict[Path, Path] = {}
        scratch: dict[Path, int] = {}
        if copy is None:
            cwd = work
        elif sandbox_disabled():
            cwd = copy
        else:  # a scratch copy of the snapshot where the notebook's folder is, as the kernel
            mounts, scratch, cwd = {HANDED_IN: copy}, {folder: limits.scratch_bytes}, folder
            argv = in_scratch_copy(argv)
        outcome = run_sandboxed(argv, read_only=[*visible_paths(), CHILD], writable=[work],
                                mounts=mounts, scratch=scratch, env=_sandbox_env(profile),
                                cwd=cwd, limits=limits)
        return _read_events(events), outcome


def describe_submission(cells: list[Any], profile: str, limits: Limits = Limits(),
                        cell_seconds: float = 30.0, folder: Path | None = None,
                        deadline: float | None = None) -> dict[str, ModelResult]:
    """Per model key: what the sandbox could describe of it, or the problem that stopped it.

    ``folder`` is the notebook's folder: the code runs there, in a scratch copy of a snapshot
    taken now (files handed in beside the notebook import; writes are thrown away),
    as in the kernel; each cell is interrupted after ``cell_seconds``. No run goes past
    ``deadline`` (``time.monotonic()``: the submission's time budget), retries included.
    """
    with tempfile.TemporaryDirectory(prefix="cnn-notebook-") as holder:
        copy = snapshot(Path(folder).resolve(), Path(holder)) if folder else None
        return _describe(cells, profile, limits, cell_seconds,
                         Path(folder).resolve() if folder else None, copy, deadline)


BUDGET_SPENT = "the submission's time budget was spent before the grader got there"


def _describe(cells: list[Any], profile: str, limits: Limits, cell_seconds: float,
              folder: Path | None, copy: Path | None,
              deadline: float | None) -> dict[str, ModelResult]:
    job = {**build_job(cells, profile), "cell_seconds": cell_seconds}
    results: dict[str, ModelResult] = {}
    ended = BUDGET_SPENT
    for _attempt in range(MAX_RETRIES + 1):
        left = math.inf if deadline is None else deadline - time.monotonic()
        if left <= 0:
            break
        events, outcome = _run_once(job, profile, replace(
            limits, wall_seconds=min(limits.wall_seconds, left)), folder, copy)
        ended = f"it {outcome.describe()}"
        running, describing, collector = None, None, _Collector()
        for event in events:
            if event.get("event") == "cell" and isinstance(event.get("index"), int):
                running, describing = event["index"], None
            elif event.get("event") == "describing" and event.get("key") in MODELS:
                describing = event["key"]
            else:
                collector.add(event)
                if event.get("key") == describing and event.get("key") in collector.done:
                    describing = None
        for key, result in collector.done.items():
            results.setdefault(key, result)
        missing = [m for m in job["models"] if m["key"] not in results]
        if not missing or any(e.get("event") == "done" for e in events) or running is None:
            break
        if describing is not None:  # building the class or tracing forward() ended the run
            configs = next(m["configs"] for m in job["models"] if m["key"] == describing)
            results[describing] = collector.stopped(describing, configs, outcome.describe()) \
                or ModelResult(problem=f"building {MODELS[describing][0]} and running its "
                                       f"forward() in training mode {outcome.describe()}")
            job["models"] = [m for m in job["models"] if m["key"] != describing]
            continue
        for model in missing:  # those that needed the cell that ended the run
            if model["after_cell"] == running:
                results[model["key"]] = ModelResult(
                    problem=f"grading stopped in the {MODELS[model['key']][0]} cell: the "
                            f"code there {outcome.describe()}")
        job["cells"][running] = ""  # run again without the cell that ended the run
    for model in job["models"]:
        results.setdefault(model["key"], ModelResult(
            problem=f"the grader could not run the notebook's code up to the "
                    f"{MODELS[model['key']][0]} cell: {ended}"))
    for key, (class_name, grade_id, _size) in MODELS.items():
        results.setdefault(key, ModelResult(
            problem=f"the notebook has no {class_name} cell (grade_id {grade_id})"))
    return results


def describe_locally(cls: type, key: str, profile: str) -> ModelResult:
    """Describe ``cls`` in this process, as the sandbox would (tests and calibration only:
    trusted classes)."""
    from cnn_grader.describe_child import describe_class

    model = {"key": key, "class_name": MODELS[key][0], "configs": model_configs(key, profile)}
    return model_result(describe_class(cls, model))
