"""The graded parts of the assignment, one pytest test per part and model.

Run by ``runner.run_checks`` (never by students, never in their kernel). Each test is
marked with the part it scores; the part's grade_id is ``{model}_{part}``. Each part
asks only for what it checks (``need``): a description that is missing at one size or
for one configuration costs only the parts that need it, each with that reason.
"""
from __future__ import annotations

import pytest

from cnn_course import get_profile
from cnn_grader.describe import ModelResult
from cnn_grader.netgraph.analysis import torchvision_modules
from cnn_grader.netgraph.description import Graph, Inventory

from . import checks
from cnn_grader.paper import ModelSpec, get_spec

MODELS = ("alexnet", "vgg16")


@pytest.fixture(params=MODELS, scope="module")
def model(request) -> str:
    """Module scope: pytest runs all of one model's parts, then the other's, so that the
    grader's weights for a network (``checks._initial_weights``) are drawn once."""
    return request.param


@pytest.fixture
def spec(model):
    return get_spec(model)


@pytest.fixture
def result(model, spec, submission) -> ModelResult:
    """What the sandbox could describe; fails every part only when nothing is known (no
    class, a constructor that fails) or the network comes from torchvision.models."""
    result = submission.models[model]
    if result.problem:
        pytest.fail(result.problem, pytrace=False)
    for inventory in result.inventories.values():
        borrowed = torchvision_modules(inventory)
        if borrowed:
            where = f"self.{borrowed[0]}" if borrowed[0] else "the class itself"
            pytest.fail(f"{spec.class_name} uses torchvision.models ({where}): the assignment "
                        f"asks you to write the network from layers (nn.Conv2d, nn.ReLU, "
                        f"nn.MaxPool2d, nn.Linear, ...), so this part scores 0", pytrace=False)
    return result


def need(result: ModelResult, spec: ModelSpec, in_channels: int, num_classes: int,
         size: int, profile: str | None = None) -> Graph:
    """The graph of one configuration, or a failure that says why there is none."""
    config = (in_channels, num_classes, size)
    if config in result.graphs:
        return result.graphs[config]
    why = result.errors.get(config, f"{spec.class_name} was not described at {size}x{size}")
    if profile is not None and size != spec.full_size and \
            (in_channels, num_classes, spec.full_size) in result.graphs:
        # it runs at the paper's size: the training size is what it cannot take
        why += (f". Under profile {profile} the grader trains {spec.class_name}(1, 10) on "
                f"{size}x{size} images; the nn.AdaptiveAvgPool2d the assignment asks for "
                f"before the flatten lets the network accept them")
    pytest.fail(why, pytrace=False)


def params_source(result: ModelResult, spec: ModelSpec, in_channels: int,
                  num_classes: int) -> Graph | Inventory:
    """The layers in forward order where forward() could be traced at the paper's size,
    else what the constructor built."""
    return result.graphs.get((in_channels, num_classes, spec.full_size)) or \
        result.inventories[(in_channels, num_classes)]


def train_size(spec: ModelSpec, profile: str) -> int:
    return get_profile(profile).image_size(spec.key)


@pytest.mark.part("parameters")
def test_parameters(spec, result, report):
    counts = [checks.parameters(spec, params_source(result, spec, *pair))
              for pair in ((3, 1000), (1, 10))]
    report(f"{spec.class_name}: parameter counts correct ({counts[0]:,} for (3, 1000), "
           f"{counts[1]:,} for (1, 10))")


@pytest.mark.part("logits")
def test_logits(spec, result, report):
    report(checks.logits(spec, need(result, spec, 3, 1000, spec.full_size),
                         need(result, spec, 1, 10, spec.full_size)))


@pytest.mark.part("feature_maps")
def test_feature_maps(spec, result, report):
    report(checks.feature_maps(spec, need(result, spec, 3, 1000, spec.full_size)))


@pytest.mark.part("trainable")
def test_trainable(spec, result, report, submission):
    profile = submission.profile
    report(checks.trainable(spec, need(result, spec, 1, 10, train_size(spec, profile),
                                       profile)))


@pytest.mark.part("accuracy")
def test_accuracy(spec, result, report, submission):
    profile = submission.profile
    paper = need(result, spec, 3, 1000, spec.full_size)
    small = params_source(result, spec, 1, 10)
    checks.structure(spec, paper, small)
    train = need(result, spec, 1, 10, train_size(spec, profile), profile)
    report(checks.accuracy(spec, train, profile))
