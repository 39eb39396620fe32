"""The training cache (cnn_grader/training_cache.py): networks that compute the same
function train once, whatever they are called; whatever changes the training misses; an
entry that is not sound is never returned but recomputed and rewritten (issue 14).

Every test names, in a comment, the wrong implementation it catches.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import re
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnn_grader import course_preprocessors, training_cache
from cnn_grader.describe import describe_locally
from cnn_grader.describe_child import describe_config
from cnn_grader.hidden_checks import checks
from cnn_grader.hidden_checks.recipes import grading_recipe
from waiting import wait_for
from cnn_grader.hidden_checks.reference import load_reference
from cnn_grader.netgraph.description import Graph, Ref, load_graph
from cnn_grader.paper import get_spec

VGG = get_spec("vgg16")
VGG16Ref = load_reference()["vgg16"]
SMALL = (1, 10, 32)  # the configuration the ci profile trains VGG16 at
INFO = re.compile(r"training: (\d+) cached, (\d+) trained")


# ----------------------------------------------------------------------------- networks
class Stage(nn.Sequential):
    """A container class of the student's own: its name is not part of the computation."""


class Respelled(nn.Module):
    """VGG16 as the master computes it, with other attribute and class names."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        stages, channels = [], in_channels
        for widths in ([64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]):
            layers = []
            for width in widths:
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1),
                           nn.ReLU(inplace=True)]
                channels = width
            stages.append(Stage(*layers, nn.MaxPool2d(kernel_size=2, stride=2)))
        self.body = nn.Sequential(*stages)
        self.squeeze = nn.AdaptiveAvgPool2d((7, 7))
        self.head = Stage(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                          nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                          nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.head(torch.flatten(self.squeeze(self.body(x)), 1))


class HeadFirst(nn.Module):
    """The master's layers, the classifier registered first: its weights are drawn first."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        master = VGG16Ref(in_channels, num_classes)
        self.classifier = master.classifier
        self.features, self.avgpool = master.features, master.avgpool

    forward = VGG16Ref.forward


class WideStem(VGG16Ref):
    """The master with a 5 x 5 first convolution (same output shape)."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[0] = nn.Conv2d(in_channels, 64, kernel_size=5, padding=2)


class Tiny(nn.Module):
    """A network that trains in milliseconds, for the storage tests."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.norm(self.conv(x))), 1), 1))


@functools.cache
def small(cls: type) -> Graph:
    """The (1, 10) graph at the ci training size."""
    return load_graph(describe_config(cls, *SMALL))


@functools.cache
def described(cls: type) -> dict:
    return describe_locally(cls, "vgg16", "ci").graphs


def renamed(graph: Graph, kind: str, old: str, new: str) -> Graph:
    """``graph`` with the parameter, buffer or node ``old`` called ``new`` everywhere."""
    def ref(value):
        if isinstance(value, Ref):
            return Ref(kind, new) if value == Ref(kind, old) else value
        return tuple(ref(v) for v in value) if isinstance(value, tuple) else value
    nodes = tuple(replace(n, name=new if kind == "node" and n.name == old else n.name,
                          args=ref(n.args), kwargs=ref(n.kwargs)) for n in graph.nodes)
    entries = {"param": "params", "buffer": "buffers"}
    changed = {field: tuple((new if name == old else name, shape)
                            for name, shape in getattr(graph, field))
               for k, field in entries.items() if k == kind}
    return replace(graph, nodes=nodes, output=ref(graph.output), **changed)


def key_of(graph: Graph, profile: str = "ci", seed: int | None = None) -> str:
    """The key ``checks.trained`` uses for ``graph`` (VGG16's recipe)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return training_cache.key(graph, "vgg16", profile, grading_recipe("vgg16", profile), seed,
                              device)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """The cache folder of this test."""
    path = tmp_path / "cache"
    monkeypatch.setenv(training_cache.ENV, str(path))
    return path


@pytest.fixture
def fits(monkeypatch) -> list:
    """The networks ``checks.fit`` trained (really) during the test."""
    calls, real = [], checks.fit

    def counted(net, *args, **kwargs):
        calls.append(net)
        return real(net, *args, **kwargs)
    monkeypatch.setattr(checks, "fit", counted)
    return calls


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


# ----------------------------------------------------------------------------- the key
def test_two_spellings_of_vgg16_have_one_canonical_text_and_key():
    # kills: canonical keeping parameter names, module paths/classes or node names
    master, spelled = described(VGG16Ref), described(Respelled)
    assert master.keys() == spelled.keys()
    for config, graph in master.items():
        assert graph.params != spelled[config].params  # the names differ: renaming is tested
        assert training_cache.canonical(graph) == training_cache.canonical(spelled[config])
    assert key_of(master[SMALL]) == key_of(spelled[SMALL])


@pytest.mark.parametrize("variant", [WideStem, HeadFirst], ids=["kernel_size", "registration"])
def test_a_network_that_trains_differently_gets_another_key(variant):
    # kills: parameters named by first use instead of graph.params order (HeadFirst draws
    # its weights in another order), parameter shapes left out (WideStem)
    assert training_cache.canonical(small(variant)) != training_cache.canonical(small(VGG16Ref))
    assert key_of(small(variant)) != key_of(small(VGG16Ref))


def _first_bias(graph: Graph) -> str:
    return next(name for name, _shape in graph.params if name.endswith("bias"))


def _padding(graph: Graph) -> Graph:
    conv = graph.nodes[0]
    return replace(graph, nodes=(replace(conv, args=conv.args[:-1] + ((0, 0),)),
                                 *graph.nodes[1:]))


SAME = {  # what the rebuild never reads
    "line": lambda g: replace(g, nodes=tuple(replace(n, line=f"x = f({i})", module="m", shape=None)
                                             for i, n in enumerate(g.nodes))),
    "modules": lambda g: replace(g, modules=(("", ("Student",)),)),
    "node_name": lambda g: renamed(g, "node", g.nodes[0].name, "first"),
    "bias_name": lambda g: renamed(g, "param", _first_bias(g), "stem.my_bias"),
    "buffer_name": lambda g: renamed(g, "buffer", "norm.running_var", "bn.running_var"),
    # kills: in-place forms kept apart (the rebuild runs relu_ as relu: one training)
    "in_place": lambda g: replace(g, nodes=tuple(replace(n, op="aten.relu_.default")
                                                 if n.op == "aten.relu.default" else n
                                                 for n in g.nodes)),
}
OTHER = {  # what the rebuild or reinit reads
    "frozen": lambda g: replace(g, frozen=(g.params[0][0],)),  # kills: frozen left out
    "bias_flag": lambda g: renamed(g, "param", _first_bias(g), "conv.offset"),  # kills: no bias flag
    "buffer_kind": lambda g: renamed(g, "buffer", "norm.running_var", "norm.scale"),  # kills: buffer kinds left out
    "argument": _padding,  # kills: literal arguments left out
    "size": lambda g: replace(g, size=g.size + 1),  # kills: size left out
    "classes": lambda g: replace(g, num_classes=9),  # kills: num_classes left out
    "op": lambda g: replace(g, nodes=tuple(replace(n, op="aten.sigmoid.default")
                                           if n.op == "aten.relu.default" else n
                                           for n in g.nodes)),  # kills: ops left out
}


@pytest.mark.parametrize("change", SAME.values(), ids=SAME.keys())
def test_names_lines_and_module_classes_do_not_count(change):
    # kills: canonical keeping lines, module paths/classes, recorded shapes or node names
    graph = small(Tiny)
    assert training_cache.canonical(change(graph)) == training_cache.canonical(graph)


@pytest.mark.parametrize("change", OTHER.values(), ids=OTHER.keys())
def test_what_the_rebuild_reads_counts(change):
    graph = small(Tiny)
    assert training_cache.canonical(change(graph)) != training_cache.canonical(graph)


@pytest.mark.parametrize("changed", [
    {"profile": "cpu"},  # kills: profile left out
    {"seed": 1},  # kills: seed left out
    {"device": "cuda"},  # kills: device kind left out
    {"model": "alexnet"},  # kills: model left out
])
def test_the_key_holds_profile_seed_device_and_model(changed):
    graph = small(Tiny)
    base = {"model": "vgg16", "profile": "ci", "seed": None, "device": "cpu"}
    args = {**base, **changed}
    plan = grading_recipe("vgg16", "ci")
    assert training_cache.key(graph, args["model"], args["profile"], plan, args["seed"],
                              args["device"]) != training_cache.key(graph, plan=plan, **base)


def test_the_recipes_own_seed_named_or_not_has_one_key():
    # kills: seed=None and the recipe's seed (what calibration passes) keyed apart, which
    # trains the same network twice
    plan = grading_recipe("vgg16", "ci")
    assert key_of(small(Tiny), seed=None) == key_of(small(Tiny), seed=plan.recipe.seed)
    assert key_of(small(Tiny), seed=None) != key_of(small(Tiny), seed=plan.recipe.seed + 1)


def test_the_key_holds_torchs_version(monkeypatch):
    # kills: torch's version left out
    before = key_of(small(Tiny))
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert key_of(small(Tiny)) != before


def test_code_version_hashes_the_python_files_of_both_packages(tmp_path, monkeypatch, request):
    # kills: one package left out, paths not hashed, other files hashed
    request.addfinalizer(training_cache.code_version.cache_clear)  # the real packages' again
    grader, course = tmp_path / "cnn_grader", tmp_path / "cnn_course"
    (grader / "hidden").mkdir(parents=True)
    course.mkdir()
    (grader / "hidden" / "checks.py").write_text("A = 1\n")
    (course / "train.py").write_text("B = 1\n")
    (course / "subset.txt").write_text("data\n")
    monkeypatch.setattr(training_cache, "SOURCES", (grader, course))

    def version() -> str:  # as a new process would read it
        training_cache.code_version.cache_clear()
        return training_cache.code_version()
    first = version()
    (course / "subset.txt").write_text("other data\n")
    assert version() == first
    (course / "train.py").write_text("B = 2\n")
    second = version()
    assert second != first
    (grader / "hidden" / "checks.py").rename(grader / "checks.py")
    assert version() != second


def test_code_version_reads_the_real_packages():
    # kills: SOURCES pointing at a folder without the grader's sources
    files = {p.name for root in training_cache.SOURCES for p in root.rglob("*.py")}
    assert {"checks.py", "training_cache.py", "train.py", "data.py"} <= files


# ----------------------------------------------------------------------------- trained
def test_two_spellings_train_once(folder, monkeypatch):
    # kills: no lookup, no store, a key by names, seconds measured again on a hit
    calls = []

    def fake_fit(net, *args, **kwargs):  # VGG16's real run takes over 30 s on 2 cores
        calls.append(net)
        return SimpleNamespace(test_acc=[0.25])
    monkeypatch.setattr(checks, "fit", fake_fit)
    hits, misses = training_cache.counts()
    spent = training_cache.training_seconds()
    first = checks.trained(VGG, described(VGG16Ref)[SMALL], "ci")
    after_training = training_cache.training_seconds()
    second = checks.trained(VGG, described(Respelled)[SMALL], "ci")
    assert len(calls) == 1 and second == first
    assert training_cache.counts() == (hits + 1, misses + 1)
    assert after_training > spent and training_cache.training_seconds() == after_training
    assert len(entries(folder)) == 1
    training_cache.reset()
    assert training_cache.counts() == (0, 0)  # kills: reset that does not reset
    assert training_cache.training_seconds() == 0.0


@pytest.mark.parametrize("change", ["recipe", "code"])
def test_a_changed_recipe_or_grader_misses(change, folder, fits, monkeypatch):
    # kills: a key without the grading recipe (recipe) or without code_version (code)
    checks.trained(VGG, small(Tiny), "ci")
    if change == "recipe":
        plan = grading_recipe("vgg16", "ci")
        monkeypatch.setattr(checks, "grading_recipe", lambda model, profile: replace(
            plan, recipe=replace(plan.recipe, lr=plan.recipe.lr * 2)))
    else:
        monkeypatch.setattr(training_cache, "code_version", lambda: "an edited grader")
    checks.trained(VGG, small(Tiny), "ci")
    assert len(fits) == 2 and len(entries(folder)) == 2


def _entry(path: Path) -> dict:
    return json.loads(path.read_text())


def _poisoned(result: list) -> Callable[[Path, Path], None]:
    """Corruption: an entry with ``result`` and a valid checksum over it."""
    def write(path: Path, _other: Path) -> None:
        entry = _entry(path)
        path.write_text(json.dumps({**entry, "result": result,
                                    "checksum": training_cache._checksum(entry["key"], result)}))
    return write


def _bad_checksum(path: Path, _other: Path) -> None:
    entry = _entry(path)
    path.write_text(json.dumps({**entry, "result": [2.0, 0.5, 0.9, 1.0]}))


CORRUPTIONS = {  # each kills the check that catches it
    "garbage": lambda path, _other: path.write_bytes(b"\x00\xff\xfe not json"),  # parse
    "truncated": lambda path, _other: path.write_text(path.read_text()[:40]),  # parse
    "checksum": _bad_checksum,  # checksum
    "foreign": lambda path, other: path.write_bytes(other.read_bytes()),  # stored key
    "nan": _poisoned([math.nan, 0.5, 0.9, 1.0]),  # finite
    "inf": _poisoned([2.0, 0.5, 0.9, math.inf]),  # finite
    "accuracy": _poisoned([2.0, 0.5, 1.5, 1.0]),  # accuracy in [0, 1]
    "seconds": _poisoned([2.0, 0.5, 0.9, -1.0]),  # seconds >= 0
    "three_values": _poisoned([2.0, 0.5, 0.9]),  # four values
    "strings": _poisoned(["2.0", "0.5", "0.9", "1.0"]),  # floats
    "not_an_entry": lambda path, _other: path.write_text("[1, 2, 3]"),  # an object
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_bad_entry_is_ignored_recomputed_and_rewritten(corrupt, folder, fits, caplog):
    # kills: returning a stale or tampered entry, or leaving it in place
    graph = small(Tiny)
    training_cache.store(key_of(graph), (2.5, 2.4, 0.3, 7.0))
    training_cache.store(key_of(graph, seed=1), (2.6, 2.5, 0.4, 8.0))  # for "foreign"
    assert training_cache.lookup(key_of(graph)) == (2.5, 2.4, 0.3, 7.0)  # sound before
    path, other = folder / f"{key_of(graph)}.json", folder / f"{key_of(graph, seed=1)}.json"
    corrupt(path, other)
    planted = path.read_bytes()
    hits, misses = training_cache.counts()
    with caplog.at_level(logging.WARNING, logger=training_cache.__name__):
        result = checks.trained(VGG, graph, "ci")
    assert len(fits) == 1 and training_cache.counts() == (hits, misses + 1)
    assert any("ignoring" in r.getMessage() for r in caplog.records)
    assert path.read_bytes() != planted
    assert _entry(path)["key"] == key_of(graph)
    assert tuple(_entry(path)["result"]) == result
    assert checks.trained(VGG, graph, "ci") == result and len(fits) == 1


def test_without_a_folder_nothing_is_written(tmp_path, monkeypatch, fits):
    # kills: a default folder (or a file in the working directory) when none is set
    monkeypatch.delenv(training_cache.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    hits, misses = training_cache.counts()
    checks.trained(VGG, small(Tiny), "ci")
    checks.trained(VGG, small(Tiny), "ci")
    assert len(fits) == 2 and training_cache.counts() == (hits, misses + 2)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_training_is_not_cached(folder, monkeypatch):
    # kills: storing before or regardless of the training's outcome
    def broken(*args, **kwargs):
        raise ValueError("shapes do not match")
    monkeypatch.setattr(checks, "fit", broken)
    with pytest.raises(AssertionError, match="raised ValueError"):
        checks.trained(VGG, small(Tiny), "ci")
    assert entries(folder) == []


@pytest.mark.parametrize("profile, require", [("full", ""), ("ci", "1")])
def test_the_gpu_requirement_raises_despite_a_cached_result(profile, require, folder,
                                                            monkeypatch):
    # kills: the lookup moved above the GPU checks
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(checks.REQUIRE_GPU_ENV, require)
    training_cache.store(key_of(small(Tiny), profile), (2.0, 1.0, 0.9, 5.0))
    assert training_cache.lookup(key_of(small(Tiny), profile)) == (2.0, 1.0, 0.9, 5.0)
    with pytest.raises(RuntimeError, match="GPU"):
        checks.trained(VGG, small(Tiny), profile)


# ----------------------------------------------------------------------------- the log line
def test_the_info_line_counts_this_submissions_trainings_only(folder, monkeypatch, caplog):
    # kills: the process's totals instead of this submission's, cached and trained swapped
    training_cache.store("stored", (2.0, 1.0, 0.5, 3.0))
    training_cache.lookup("earlier")  # a miss of an earlier submission, and its training
    training_cache.add_training(100.0)

    def run_checks(submission):  # one cached and two fresh trainings
        for key in ("stored", "new", "newer"):
            if training_cache.lookup(key) is None:
                training_cache.add_training(1.25)
        return {}
    monkeypatch.setattr(course_preprocessors, "run_checks", run_checks)
    described_ = Future()
    described_.set_result(({}, 0.5))
    resources = {course_preprocessors.DESCRIPTION: (described_, "ci"),
                 course_preprocessors.BUDGET: (0.0, 600.0)}
    logger = logging.getLogger("test_training_cache.grade")
    with caplog.at_level(logging.INFO, logger=logger.name):
        course_preprocessors.GradeOutsideKernel(log=logger).preprocess(
            nbformat.v4.new_notebook(), resources)
    line = next(r.getMessage() for r in caplog.records if "graded with profile" in r.getMessage())
    assert line.endswith("parts passed; training: 1 cached, 2 trained in 2.5 s")
    assert INFO.search(line).groups() == ("1", "2")


# ----------------------------------------------------------------------------- concurrency
def test_workers_that_meet_one_network_at_once_train_it_once(folder, fits):
    # kills: claimed() without the lock (both lookups miss and both train), a lock per
    # process instead of per open file (threads would not exclude each other)
    import threading

    graph, start, results = small(Tiny), threading.Barrier(2), []

    def worker():
        start.wait()
        results.append(checks.trained(VGG, graph, "ci"))
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(fits) == 1 and len(results) == 2 and results[0] == results[1]
    assert len(entries(folder)) == 1


def test_a_killed_trainers_lock_is_released(folder, tmp_path):
    # kills: a lock that outlives its holder (a marker file instead of flock): after a
    # worker is killed mid-training, the next one would wait for ever
    import os
    import subprocess
    import sys
    import threading

    held = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, pathlib, time\n"
        "from cnn_grader import training_cache\n"
        "with training_cache.claimed('k') as cached:\n"
        f"    pathlib.Path({str(held)!r}).write_text(repr(cached))\n"
        "    time.sleep(600)\n")], env={**os.environ, training_cache.ENV: str(folder)})
    try:
        wait_for(lambda: holder.poll() is not None or (held.exists() and held.read_text()),
                 60, "the holder to claim the key", poll=0.1)
        assert held.read_text() == "None", "the holder did not claim the key"
        waited = []
        waiter = threading.Thread(target=lambda: waited.append(
            training_cache.claimed("k").__enter__()))
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive(), "a second claim of a held key did not wait"
        holder.kill()
        waiter.join(timeout=30)
        assert waited == [None], "the key stayed locked after its holder was killed"
    finally:
        holder.kill()
        holder.wait()


def test_an_unlockable_folder_still_trains(tmp_path, monkeypatch, fits, caplog):
    # kills: a lock failure that stops grading (a read-only cache folder)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(training_cache.ENV, str(blocked))
    with caplog.at_level(logging.WARNING, logger=training_cache.log.name):
        checks.trained(VGG, small(Tiny), "ci")
    assert len(fits) == 1 and "unlocked" in caplog.text
