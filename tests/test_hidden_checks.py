"""The hidden checks on rebuilt networks (profile ci): the reference passes every part;
wrong networks lose the parts they should; the loader refuses crafted descriptions; a
crash inside a check is the grader's error, never a student's zero."""
from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn

from cnn_grader.describe_child import describe_config
from cnn_grader.hidden_checks import checks
from cnn_grader.hidden_checks.calibrate import defective, with_lrn
from cnn_grader.hidden_checks.reference import load_reference
from cnn_grader.hidden_checks.runner import GraderError, Submission, run_checks
from cnn_grader.paper import get_spec
from cnn_grader.netgraph.description import DescriptionError, load_graph

REF = load_reference()
AlexNetRef, VGG16Ref = REF["alexnet"], REF["vgg16"]


@functools.cache
def description(cls: type, in_channels: int, num_classes: int, size: int) -> dict:
    return describe_config(cls, in_channels, num_classes, size)


def graphs(cls: type, model: str = "alexnet"):
    spec = get_spec(model)
    small = 67 if model == "alexnet" else 32
    return (load_graph(description(cls, 3, 1000, spec.full_size)),
            load_graph(description(cls, 1, 10, small)))


def outcome(part: str, cls: type, model: str = "alexnet") -> str | None:
    """None if the part passes, else its message (accuracy: the structural gate only)."""
    spec = get_spec(model)
    paper, small = graphs(cls, model)
    calls = {"parameters": lambda: [checks.parameters(spec, g) for g in (paper, small)],
             "logits": lambda: checks.logits(spec, paper, small),
             "feature_maps": lambda: checks.feature_maps(spec, paper),
             "trainable": lambda: checks.trainable(spec, small),
             "structure": lambda: checks.structure(spec, paper, small)}
    try:
        calls[part]()
    except AssertionError as error:
        return str(error)
    return None


class NarrowConv2(AlexNetRef):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[3] = nn.Conv2d(96, 128, kernel_size=5, padding=2)
        self.features[6] = nn.Conv2d(128, 384, kernel_size=3, padding=1)


class Stride2(AlexNetRef):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[0].stride = (2, 2)


class Detached(AlexNetRef):
    def forward(self, x):
        x = self.features(x).detach()
        return self.classifier(torch.flatten(self.avgpool(x), 1))


class Always1000(AlexNetRef):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, 1000)


class Softmaxed(AlexNetRef):
    def forward(self, x):
        return super().forward(x).relu()


class Frozen(AlexNetRef):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[0].weight.requires_grad_(False)


ALL_PARTS = ("parameters", "logits", "feature_maps", "trainable", "structure")


@pytest.mark.parametrize("model, cls", [("alexnet", AlexNetRef), ("vgg16", VGG16Ref),
                                        ("alexnet", with_lrn(AlexNetRef))])
@pytest.mark.parametrize("part", ALL_PARTS)
def test_reference_and_variant_pass_every_part(model, cls, part):
    assert outcome(part, cls, model) is None


@pytest.mark.parametrize("cls, failing, words", [
    (NarrowConv2, {"parameters", "feature_maps", "structure"}, "conv2"),
    (Stride2, {"feature_maps", "structure"}, "conv1"),
    (Detached, {"trainable"}, "detach"),
    (Always1000, {"parameters", "logits", "structure"}, "10"),
    (Softmaxed, {"logits", "structure"}, "non-negative"),
    (Frozen, {"trainable"}, "frozen"),
    (defective(AlexNetRef), {"feature_maps", "structure"}, "conv1"),
])
def test_wrong_networks_lose_exactly_their_parts(cls, failing, words):
    messages = {part: outcome(part, cls) for part in ALL_PARTS}
    assert {part for part, message in messages.items() if message} == failing, messages
    assert any(words in messages[part] for part in failing), messages


def test_the_accuracy_part_trains_and_reports_the_profile():
    spec = get_spec("alexnet")
    summary = checks.accuracy(spec, graphs(AlexNetRef)[1], "ci")
    assert "profile ci" in summary and "training images" in summary
    assert summary.startswith("On a CPU (profile ci) this part checks"), summary


# ----------------------------------------------------------------------------- crafted
def crafted(change) -> dict:
    data = copy.deepcopy(description(AlexNetRef, 1, 10, 67))
    change(data)
    return data


@pytest.mark.parametrize("change, words", [
    (lambda d: d["nodes"][0].update(op="builtins.exec"), "builtins.exec"),
    (lambda d: d["nodes"][0].update(op="aten.sigmoid"), "aten.sigmoid"),
    (lambda d: d["nodes"][0].update(op="torch.ops.aten.relu.default"), "not an operation"),
    (lambda d: d["params"][0].update(name="__class__.__init__/../x"), "not an allowed name"),
    (lambda d: d["params"][0].update(shape=[10**9, 10**9]), "integer"),
    (lambda d: d["params"].extend({"name": f"p{i}", "shape": [60000, 60000]} for i in range(3)),
     "exceed"),
    (lambda d: d["nodes"][1]["args"].__setitem__(0, {"node": "later_node"}), "earlier node"),
    (lambda d: d["nodes"][0]["args"].__setitem__(0, {"pickle": "cos\nsystem"}), "not allowed"),
    (lambda d: d.update(output=[{"param": d["params"][0]["name"]}]), "computed from its input"),
    (lambda d: d.update(nodes=d["nodes"] * 200), "between 1 and"),
])
def test_the_loader_refuses_crafted_descriptions(change, words):
    with pytest.raises(DescriptionError) as error:
        load_graph(crafted(change))
    assert words in str(error.value)


# ----------------------------------------------------------------------------- runner
def submission_of(cls: type | None, problem: str | None = None) -> Submission:
    from cnn_grader.describe import ModelResult, describe_locally

    models = {}
    for model, base in (("alexnet", cls), ("vgg16", None)):
        if base is None:
            models[model] = ModelResult(problem=problem or "not written")
        else:
            models[model] = describe_locally(base, model, "ci")
    return Submission(models, "ci")


def test_runner_reports_every_part_with_the_students_message():
    results = run_checks(submission_of(Softmaxed))
    assert set(results) == {f"{m}_{p}" for m in ("alexnet", "vgg16") for p in
                            ("parameters", "logits", "feature_maps", "trainable", "accuracy")}
    assert not results["alexnet_logits"].passed
    assert "non-negative" in results["alexnet_logits"].message
    assert results["alexnet_parameters"].passed
    assert not results["vgg16_parameters"].passed
    assert results["vgg16_parameters"].message == "not written"
    assert results["alexnet_parameters"].rule == ""  # a pass names no rule
    # the rule is the grader's check that raised, whichever helper raised it
    assert results["alexnet_logits"].rule.startswith(("checks.", "analysis.", "test_parts."))
    assert results["alexnet_logits"].rule != results["vgg16_parameters"].rule


def test_a_crash_inside_a_check_is_the_graders_error(monkeypatch):
    def broken(*_args):
        raise KeyError("a bug in the grader")

    monkeypatch.setattr(checks, "trainable", broken)
    with pytest.raises(GraderError, match="a bug in the grader"):
        run_checks(submission_of(Always1000))


def test_the_graders_weights_are_drawn_once_and_never_shared():
    # kills: reinit handing out the cached tensors themselves (a part that trains would
    # change the next part's starting weights), a cache keyed without the seed or shapes
    _paper, small = graphs(REF["alexnet"])
    first = checks.rebuilt(small)
    start = {name: w.detach().clone() for name, w in first.named_graph_parameters()}
    with torch.no_grad():
        for _name, w in first.named_graph_parameters():
            w.add_(1.0)  # what a training step does to the rebuilt network
    again = dict(checks.rebuilt(small).named_graph_parameters())
    assert all(torch.equal(again[name], value) for name, value in start.items())
    other_seed = dict(checks.rebuilt(small, seed=1).named_graph_parameters())
    shapes = {name: value.dim() for name, value in start.items()}
    conv = next(name for name, dim in shapes.items() if dim == 4)
    linear = next(name for name, dim in shapes.items() if dim == 2)
    bias = next(name for name, dim in shapes.items() if dim == 1)
    assert not torch.equal(other_seed[conv], start[conv])
    assert torch.equal(other_seed[bias], torch.zeros_like(start[bias]))
    assert start[linear].std().item() == pytest.approx(0.01, rel=0.05)


def test_each_networks_weights_are_drawn_once_per_submission(monkeypatch):
    # kills: the parts run model by model interleaved (alexnet, vgg16, alexnet, ...): the
    # one cached draw is evicted and VGG16's 134 million weights are drawn again (1.2 s)
    from cnn_grader.describe import describe_locally
    from cnn_grader.hidden_checks import runner

    models = {key: describe_locally(cls, key, "ci") for key, cls in REF.items()}
    monkeypatch.setattr(runner, "_CACHE", {})
    monkeypatch.setattr(checks, "trained", lambda *_args: (2.3, 2.0, 0.5, 1.0))  # no training
    checks._initial_weights.cache_clear()
    results = run_checks(Submission(models, "ci"))
    assert all(result.passed for result in results.values()), results
    assert checks._initial_weights.cache_info().misses == 2
