"""Fair grading on a corpus of student networks (tests/grading_corpus.py), profile ci.

The invariant: for every part whose visible test passes in the student's notebook, the
hidden part passes too, unless a stricter rule of grader/CHECKS.md applies (the corpus
names it, and the test checks the rule is written there). "Visible passes" is decided
by running the master's visible test cells on the student's class. Networks that
compute the same function get the same grade; no message shows a framework internal.
The accuracy part's training is replaced by a fixed result here (its gate runs): the
training itself is tested in test_hidden_checks.py and end to end.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from cnn_course import count_parameters, trace
from cnn_grader.describe import describe_locally
from grading_corpus import CORPUS, PARTS, Net
from cnn_grader.hidden_checks import checks
from cnn_grader.hidden_checks.runner import Submission, run_checks

ROOT = Path(__file__).resolve().parent.parent
MASTER = nbformat.read(ROOT / "solutions" / "assignment_cnn.ipynb", as_version=4)
CHECKS_MD = (ROOT / "grader" / "CHECKS.md").read_text()
INTERNALS = ("aten.", "torch.export", "dynamic_shapes", "fx.", "FakeTensor", "sym_size",
             "get_attr", "tensor library", "argument of kind")


def visible_source(model: str, part: str) -> str:
    cell = next(c for c in MASTER.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == f"{model}_{part}")
    return cell.source


@functools.cache
def visible(net: Net) -> dict[str, bool]:
    """Whether each visible test cell of the master passes on the student's class."""
    outcome = {}
    for part in PARTS:
        namespace = {"torch": torch, "nn": nn, "F": F, "count_parameters": count_parameters,
                     "trace": trace, "AlexNet" if net.model == "alexnet" else "VGG16": net.cls}
        try:
            exec(compile(visible_source(net.model, part), f"<visible {part}>", "exec"),  # noqa: S102
                 namespace)
            outcome[part] = True
        except Exception:  # noqa: BLE001 - a failing visible test, whatever it raises
            outcome[part] = False
    return outcome


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """The accuracy part's gate runs; its training returns a falling loss at once."""
    monkeypatch.setattr(checks, "trained", lambda *args, **kwargs: (2.30, 2.20, 0.1, 0.0))


@functools.cache
def described(net: Net, profile: str = "ci"):
    return describe_locally(net.cls, net.model, profile)


def hidden(net: Net, profile: str = "ci") -> dict[str, tuple[bool, str]]:
    """Each hidden part's outcome (passed, message) for the student's network alone."""
    other = "vgg16" if net.model == "alexnet" else "alexnet"
    from cnn_grader.describe import ModelResult
    submission = Submission({net.model: described(net, profile),
                             other: ModelResult(problem="not part of this test")}, profile)
    results = run_checks(submission)
    return {part: (results[f"{net.model}_{part}"].passed, results[f"{net.model}_{part}"].message)
            for part in PARTS}


def rules_in_checks_md() -> set[str]:
    """The stricter rules grader/CHECKS.md documents (``- **`name`**`` entries)."""
    return set(re.findall(r"^- \*\*`([a-z-]+)`\*\*", CHECKS_MD, flags=re.M))


@pytest.mark.parametrize("net", CORPUS, ids=[f"{n.model}-{n.name}" for n in CORPUS])
def test_visible_pass_means_hidden_pass_unless_a_written_rule_says_why(net: Net):
    seen, results = visible(net), hidden(net)
    documented = rules_in_checks_md()
    for part in PARTS:
        passed, message = results[part]
        rule = net.rules.get(part)
        if rule:
            assert rule in documented, f"rule {rule!r} is not written in grader/CHECKS.md"
            assert seen[part], f"{part}: rule {rule!r} is declared but the visible test fails"
            assert not passed, f"{part}: rule {rule!r} is declared but the hidden part passes"
        elif part in net.fails:
            assert not seen[part], f"{part}: listed as failing, but the visible test passes"
            assert not passed, f"{part}: the visible test fails, the hidden part passes"
        elif part in net.lenient:
            assert not seen[part], f"{part}: listed as lenient, but the visible test passes"
            assert passed, f"{part}: the hidden part fails: {message}"
        else:
            assert seen[part] and passed, (f"{part}: visible {'passes' if seen[part] else 'fails'}"
                                           f", hidden {'passes' if passed else 'fails'}: {message}")
        assert not any(word in message for word in INTERNALS), f"{part}: {message}"


GROUPS = sorted({n.group for n in CORPUS if n.group})


@pytest.mark.parametrize("group", GROUPS)
def test_spellings_of_one_computation_get_the_same_grade(group: str):
    members = [n for n in CORPUS if n.group == group]
    grades = {n.name: tuple(hidden(n)[p][0] for p in PARTS) for n in members}
    assert len(set(grades.values())) == 1, grades
    assert all(all(g) for g in grades.values()), grades


def by_name(model: str, name: str) -> Net:
    return next(n for n in CORPUS if n.model == model and n.name == name)


@pytest.mark.parametrize("model, name, part, words", [
    ("alexnet", "stub", "parameters", "not finished: replace `raise NotImplementedError()`"),
    ("alexnet", "forward-misspelt", "logits", "has no forward() method"),
    ("alexnet", "forward-misspelt", "trainable", "has no forward() method"),
    ("alexnet", "softmax-output", "logits", "returns probabilities"),
    ("alexnet", "softmax-output", "accuracy", "a softmax (torch.softmax / F.softmax / nn.Softmax)"
                                              " at forward()"),
    ("alexnet", "nn.Softmax-in-classifier", "accuracy", "at self.classifier.7 (nn.Softmax)"),
    ("alexnet", "unknown-operation", "logits", "torch.erf at forward(), line "
                                               "`return torch.erf(super().forward(x))`"),
    ("alexnet", "own-buffer", "trainable", "the registered buffer scale"),
    ("alexnet", "no-adaptive-pool", "trainable", "Under profile ci the grader trains "
                                                 "AlexNet(1, 10) on 67x67 images"),
    ("alexnet", "leaky-relu", "accuracy", "self.features.1 (nn.LeakyReLU)"),
    ("alexnet", "batchnorm", "accuracy", "self.features.1 (nn.BatchNorm2d): weight, bias"),
    ("alexnet", "batchnorm-no-affine", "accuracy", "self.features.1 (nn.BatchNorm2d)"),
    ("alexnet", "torchvision", "parameters", "uses torchvision.models (the class itself)"),
    ("alexnet", "pools-2x2", "feature_maps", "max-pool 1 (self.features.2 (nn.MaxPool2d)) is "
                                             "2x2 with stride 2"),
    ("vgg16", "no-adaptive-pool", "accuracy", "on a batch of 32x32 images"),
    ("alexnet", "batch-of-8-hard-coded", "logits", "[8, 2304] X [9216, 4096]. (line "),
    ("alexnet", "batch-of-8-hard-coded", "logits", "`return self.classifier(x)`"),
    ("alexnet", "F.dropout-always-on", "logits", "a dropout at forward(), line `x = relu1(fc1("
                                                 "F.dropout(x, 0.5)))`, stays on in eval mode"),
    ("alexnet", "F.dropout-always-on", "logits", "pass training=self.training"),
    ("alexnet", "returns-logits-and-features", "logits",
     "AlexNet.forward() returns a tuple whose first value comes from line `return "
     "self.classifier(torch.flatten(self.avgpool(maps), 1)), maps`: return the logits alone"),
    ("alexnet", "no_grad-forward", "trainable", "forward() computes with gradients switched "
                                                "off (torch.no_grad() or"),
    ("alexnet", "no_grad-forward", "trainable", "no gradient reaches conv1 to fc3"),
])
def test_messages_name_the_students_code(model, name, part, words):
    passed, message = hidden(by_name(model, name))[part]
    assert not passed and words in message, message


def test_the_training_size_is_blamed_only_where_the_paper_size_runs():
    """A forward that fails at every size is told its error, not to add the adaptive pool
    it already has."""
    passed, message = hidden(by_name("alexnet", "batch-of-8-hard-coded"))["trainable"]
    assert not passed and "`return self.classifier(x)`" in message, message
    assert "AdaptiveAvgPool2d" not in message, message


PAPER_SIZE_PARTS = ("parameters", "logits", "feature_maps")


@pytest.mark.parametrize("model, name", [("alexnet", "reference"), ("vgg16", "no-adaptive-pool"),
                                         ("alexnet", "forward-misspelt"),
                                         ("alexnet", "softmax-output")])
def test_paper_size_parts_get_the_same_grade_on_every_profile(model, name, monkeypatch):
    """full describes (1, 10) at the training size 227/224 = the paper's; its trainable and
    accuracy parts (a GPU's) are not run here."""
    monkeypatch.setattr(checks, "trainable", lambda *args: "not run here")
    monkeypatch.setattr(checks, "accuracy", lambda *args: "not run here")
    net = by_name(model, name)
    grades = {profile: tuple(hidden(net, profile)[p] for p in PAPER_SIZE_PARTS)
              for profile in ("ci", "cpu", "full")}
    assert grades["ci"] == grades["cpu"] == grades["full"], grades
