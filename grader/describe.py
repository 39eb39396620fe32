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
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnn_course import get_profile

from netgraph.description import DescriptionError, Graph, load_graph
from sandbox import Limits, Outcome, run_sandboxed

HERE = Path(__file__).resolve().parent
CHILD = HERE / "describe_child.py"
MODELS = {"alexnet": ("AlexNet", "alexnet_model", 227), "vgg16": ("VGG16", "vgg16_model", 224)}
MAX_EVENTS_BYTES = 4 * 2**20  # the largest output file the trusted side reads
MAX_RETRIES = 3


@dataclass
class ModelResult:
    """What the sandbox produced for one model: its graphs, or why there are none."""

    graphs: dict[tuple[int, int], Graph] = field(default_factory=dict)  # (in_ch, classes)
    problem: str | None = None

    def graph(self, in_channels: int, num_classes: int) -> Graph:
        return self.graphs[(in_channels, num_classes)]


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
        train_size = get_profile(profile).image_size(key)
        models.append({"key": key, "class_name": class_name, "after_cell": where[grade_id],
                       "configs": [
                           {"in_channels": 3, "num_classes": 1000, "size": paper_size},
                           {"in_channels": 1, "num_classes": 10, "size": train_size}]})
    last = max((m["after_cell"] for m in models), default=-1)
    sources = [c.get("source", "") for c in code[:last + 1]]
    return {"cells": ["".join(s) if isinstance(s, list) else s for s in sources],
            "models": models}


def _read_events(path: Path) -> list[dict]:
    """The events the child wrote; anything malformed ends the list."""
    if not path.exists():
        return []
    with open(path, "rb") as handle:
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


def _model_result(event: dict) -> ModelResult:
    if event.get("event") == "model_error":
        return ModelResult(problem=str(event.get("message", "building the network failed"))[:800])
    configs = event.get("configs")
    if not isinstance(configs, list) or len(configs) != 2:
        return ModelResult(problem="the description of the network is malformed")
    result = ModelResult()
    try:
        for data in configs:
            graph = load_graph(data)
            result.graphs[(graph.in_channels, graph.num_classes)] = graph
    except DescriptionError as error:
        return ModelResult(problem=str(error))
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


def _run_once(job: dict, profile: str, limits: Limits) -> tuple[list[dict], Outcome]:
    with tempfile.TemporaryDirectory(prefix="cnn-describe-") as scratch:
        folder = Path(scratch)
        (folder / "job.json").write_text(json.dumps(job))
        events = folder / "events.jsonl"
        outcome = run_sandboxed(
            [sys.executable, str(CHILD), str(folder / "job.json"), str(events)],
            read_only=[*visible_paths(), CHILD], writable=[folder], env=_sandbox_env(profile),
            cwd=folder, limits=limits)
        return _read_events(events), outcome


def describe_submission(cells: list[Any], profile: str, limits: Limits = Limits()
                        ) -> dict[str, ModelResult]:
    """Per model key: its validated graphs, or the problem that stopped them."""
    job = build_job(cells, profile)
    results: dict[str, ModelResult] = {}
    for _attempt in range(MAX_RETRIES + 1):
        events, outcome = _run_once(job, profile, limits)
        running, describing = None, None
        for event in events:
            if event.get("event") == "cell" and isinstance(event.get("index"), int):
                running, describing = event["index"], None
            elif event.get("event") == "describing" and event.get("key") in MODELS:
                describing = event["key"]
            elif event.get("event") in ("model", "model_error") and event.get("key") in MODELS:
                results.setdefault(event["key"], _model_result(event))
                describing = None
        missing = [m for m in job["models"] if m["key"] not in results]
        if not missing or any(e.get("event") == "done" for e in events) or running is None:
            break
        if describing is not None:  # building the class or tracing forward() ended the run
            results[describing] = ModelResult(
                problem=f"building {MODELS[describing][0]} and running its forward() in "
                        f"training mode {outcome.describe()}")
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
                    f"{MODELS[model['key']][0]} cell: it {outcome.describe()}"))
    for key, (class_name, grade_id, _size) in MODELS.items():
        results.setdefault(key, ModelResult(
            problem=f"the notebook has no {class_name} cell (grade_id {grade_id})"))
    return results
