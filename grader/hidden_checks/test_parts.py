"""The graded parts of the assignment, one pytest test per part and model.

Run by ``runner.run_checks`` (never by students, never in their kernel). Each test is
marked with the part it scores; the part's grade_id is ``{model}_{part}``. The fixture
``graphs`` fails the whole model when the sandbox could not describe it or when it is
built from ``torchvision.models``.
"""
from __future__ import annotations

import pytest

from netgraph.analysis import torchvision_modules

from . import checks
from .spec import get_spec

MODELS = ("alexnet", "vgg16")


@pytest.fixture(params=MODELS)
def model(request) -> str:
    return request.param


@pytest.fixture
def spec(model):
    return get_spec(model)


@pytest.fixture
def graphs(model, spec, submission):
    """(paper graph (3, 1000), training graph (1, 10)) of the student's network."""
    result = submission.models[model]
    if result.problem:
        pytest.fail(result.problem, pytrace=False)
    paper, small = result.graph(3, 1000), result.graph(1, 10)
    borrowed = torchvision_modules(paper)
    if borrowed:
        pytest.fail(f"{spec.class_name} uses torchvision.models ({borrowed[0]}): the "
                    f"assignment asks you to write the network from layers (nn.Conv2d, "
                    f"nn.ReLU, nn.MaxPool2d, nn.Linear, ...), so this part scores 0",
                    pytrace=False)
    return paper, small


@pytest.mark.part("parameters")
def test_parameters(spec, graphs, report):
    counts = [checks.parameters(spec, graph) for graph in graphs]
    report(f"{spec.class_name}: parameter counts correct ({counts[0]:,} for (3, 1000), "
           f"{counts[1]:,} for (1, 10))")


@pytest.mark.part("logits")
def test_logits(spec, graphs, report):
    report(checks.logits(spec, *graphs))


@pytest.mark.part("feature_maps")
def test_feature_maps(spec, graphs, report):
    report(checks.feature_maps(spec, graphs[0]))


@pytest.mark.part("trainable")
def test_trainable(spec, graphs, report):
    report(checks.trainable(spec, graphs[1]))


@pytest.mark.part("accuracy")
def test_accuracy(spec, graphs, report, submission):
    report(checks.accuracy(spec, *graphs, submission.profile))
