"""netgraph.analysis: the allowed ways of writing AlexNet/VGG16 pass every check; each
defect is rejected by its check with a message naming the first layer that departs."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnn_grader.describe_child import describe_config
from cnn_grader.hidden_checks.reference import load_reference
from cnn_grader.netgraph import analysis
from cnn_grader.netgraph.description import Graph, load_graph

REF = load_reference()
AlexNetRef, VGG16Ref = REF["alexnet"], REF["vgg16"]
FULL = {"alexnet": 227, "vgg16": 224}
_DESCRIPTIONS: dict[tuple[type, int], dict] = {}


def describe(cls: type, size: int) -> dict:
    """The description of ``cls`` for (3, 1000) at ``size``, made once per test session."""
    if (cls, size) not in _DESCRIPTIONS:
        _DESCRIPTIONS[cls, size] = describe_config(cls, 3, 1000, size)
    return _DESCRIPTIONS[cls, size]


def graph_of(cls: type, size: int) -> Graph:
    return load_graph(describe(cls, size))


def check(name: str, graph: Graph, model: str) -> str | None:
    """Call a check of analysis the way the grader does (some take no model key)."""
    function = getattr(analysis, name)
    if name in ("pooling_problem", "paper_problem", "equivalence_problem"):
        return function(graph, model)
    return function(graph)


# ----------------------------------------------------------------------------- variants
class AttrAlexNet(nn.Module):
    """Layers as attributes registered classifier first, one shared max-pool, every way of
    writing a ReLU, x.view(x.size(0), -1), no adaptive pool and no dropout."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.fc3 = nn.Linear(4096, num_classes)
        self.fc2 = nn.Linear(4096, 4096)
        self.fc1 = nn.Linear(256 * 6 * 6, 4096)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2)
        self.conv1 = nn.Conv2d(in_channels, 96, 11, stride=4)
        self.pool = nn.MaxPool2d(3, 2)
        self.act = nn.ReLU(inplace=True)

    def convs(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(self.conv2(x).relu())
        x = self.conv3(x)
        F.relu_(x)
        x = self.act(self.conv4(x))
        return self.pool(torch.clamp_min(self.conv5(x), 0))

    def classify(self, x):
        x = self.act(self.fc1(x))
        return self.fc3(F.relu(self.fc2(x)))

    def forward(self, x):
        x = self.convs(x)
        return self.classify(x.view(x.size(0), -1))


class LRNAlexNet(nn.Module):
    """nn.LocalResponseNorm before max-pool 1, F.local_response_norm after max-pool 2, the
    ReLU after max-pool 3, dropout before the ReLUs, x.reshape(-1, 256 * 6 * 6)."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, 96, 11, stride=4), nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.body = nn.Sequential(
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 384, 3, padding=1),
            nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.MaxPool2d(3, 2), nn.ReLU())
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096), nn.Dropout(), nn.ReLU(), nn.Linear(4096, 4096),
            nn.Dropout(), nn.ReLU(), nn.Linear(4096, num_classes))

    def lrn(self, x):
        return F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=2)

    def forward(self, x):
        x = self.body(self.lrn(self.head(x)))
        return self.classifier(x.reshape(-1, 256 * 6 * 6))


class FlattenModuleAlexNet(AlexNetRef):
    """The reference with nn.Flatten()."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.flatten = nn.Flatten()

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class BlockVGG16(nn.Module):
    """nn.ModuleList blocks, the ReLU after each block's max-pool, functional dropout after
    the ReLUs, x.view(x.size(0), -1) and no adaptive pool."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.blocks = nn.ModuleList()
        for width, count in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
            self.blocks.append(nn.ModuleList(
                nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1)
                for i in range(count)))
            in_channels = width
        self.pool = nn.MaxPool2d(2, 2)
        self.fcs = nn.ModuleList([nn.Linear(512 * 7 * 7, 4096), nn.Linear(4096, 4096),
                                  nn.Linear(4096, num_classes)])

    def forward(self, x):
        for block in self.blocks:
            for conv in block[:-1]:
                x = F.relu(conv(x))
            x = F.relu(self.pool(block[-1](x)))
        x = x.view(x.size(0), -1)
        for fc in self.fcs[:-1]:
            x = F.dropout(F.relu(fc(x)), 0.5, self.training)
        return self.fcs[-1](x)


VARIANTS = [(AlexNetRef, "alexnet"), (AttrAlexNet, "alexnet"), (LRNAlexNet, "alexnet"),
            (FlattenModuleAlexNet, "alexnet"), (VGG16Ref, "vgg16"), (BlockVGG16, "vgg16")]


@pytest.mark.parametrize(("cls", "model"), VARIANTS, ids=lambda v: getattr(v, "__name__", v))
def test_variant_passes_every_check(cls: type, model: str) -> None:
    graph = graph_of(cls, FULL[model])
    results = {name: check(name, graph, model) for name in (
        "nonlinearity_problem", "pooling_problem", "detach_problem", "paper_problem",
        "equivalence_problem")}
    assert results == dict.fromkeys(results)
    assert analysis.torchvision_modules(graph) == []


def test_stages_of_lrn_variant() -> None:
    chain = analysis.stages(graph_of(LRNAlexNet, 227), "alexnet")
    assert [s.kind for s in chain] == [
        "conv", "relu", "lrn", "maxpool", "conv", "relu", "maxpool", "lrn", "conv", "relu",
        "conv", "relu", "conv", "maxpool", "relu", "flatten", "linear", "dropout", "relu",
        "linear", "dropout", "relu", "linear"]
    assert chain[0].config == ((4, 4), (0, 0), (1, 1), 1)
    assert chain[0].params == ("head.0.weight", "head.0.bias")
    assert chain[2].config == (5, 1e-4, 0.75, 2)
    assert chain[3].config == ((3, 3), (2, 2), (0, 0), (1, 1), False)


# ----------------------------------------------------------------------------- defects
class DroppedReLU(AttrAlexNet):
    def convs(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.conv2(x)
        F.relu(x)
        x = self.pool(x)
        x = self.act(self.conv4(self.act(self.conv3(x))))
        return self.pool(self.act(self.conv5(x)))


class NoReLUAfterFc1(AttrAlexNet):
    def classify(self, x):
        return self.fc3(F.relu(self.fc2(self.fc1(x))))


class PlusOne(AttrAlexNet):
    def classify(self, x):
        return self.fc3(F.relu(self.fc2(self.act(self.fc1(x)) + 1)))


class Residual(AttrAlexNet):
    """conv4's output skips its ReLU on the way to conv5."""

    def convs(self, x):
        x = self.pool(F.relu(self.conv2(self.pool(F.relu(self.conv1(x))))))
        y = self.conv4(F.relu(self.conv3(x)))
        return self.pool(F.relu(self.conv5(F.relu(y) + y)))


class Pool2x2(AlexNetRef):
    """2x2 pools with stride 2: the same feature-map shapes as the paper's."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        for index in (2, 5, 12):
            self.features[index] = nn.MaxPool2d(2, 2)


class AvgPool(AlexNetRef):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[2] = nn.AvgPool2d(3, 2)


class Stride2(AlexNetRef):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[0].stride = (2, 2)


class TimesTwo(AlexNetRef):
    def forward(self, x):
        x = self.features(x) * 2
        return self.classifier(torch.flatten(self.avgpool(x), 1))


class Detached(AlexNetRef):
    def forward(self, x):
        x = self.features(x).detach()
        return self.classifier(torch.flatten(self.avgpool(x), 1))


class LRNAfterConv5(LRNAlexNet):
    def forward(self, x):
        x = self.lrn(self.body(self.lrn(self.head(x))))
        return self.classifier(x.reshape(-1, 256 * 6 * 6))


class VGGNoReLU(VGG16Ref):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[13] = nn.Identity()  # the ReLU after conv3_2


class ExtraPool(AlexNetRef):
    """A fourth max-pool after the third, with the paper's window: every pool is right,
    there is one too many."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features.append(nn.MaxPool2d(3, 2))


class Fc1WithoutBias(AlexNetRef):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.classifier[1] = nn.Linear(256 * 6 * 6, 4096, bias=False)


class Conv2Kernel1x25(AlexNetRef):
    """conv2 with as many weights as the paper's 5x5, in a 1x25 kernel."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[3] = nn.Conv2d(96, 256, (1, 25), padding=(0, 12))


class Adaptive5x5(AlexNetRef):
    """An adaptive pool to 5x5 and an fc1 that fits it: consistent, not the paper's."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.avgpool = nn.AdaptiveAvgPool2d(5)
        self.classifier[1] = nn.Linear(256 * 5 * 5, 4096)


class Fc4(AlexNetRef):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.classifier.append(nn.Linear(num_classes, num_classes))


class NoFc3(AlexNetRef):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        del self.classifier[6]


class VGGSharedConv(VGG16Ref):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[26] = self.features[24]  # conv5_2 is conv5_1 again


DEFECTS = [
    (DroppedReLU, "alexnet", "nonlinearity_problem", "conv2's output reaches conv3 without a ReLU"),
    (DroppedReLU, "alexnet", "paper_problem", "after conv2, the paper has a ReLU"),
    (NoReLUAfterFc1, "alexnet", "nonlinearity_problem", "fc1's output reaches fc2"),
    (NoReLUAfterFc1, "alexnet", "paper_problem", "after fc1, the paper has a ReLU"),
    (PlusOne, "alexnet", "paper_problem", "after fc1, forward() computes an addition"),
    (Residual, "alexnet", "paper_problem", "after conv4, forward() computes an addition"),
    (Residual, "alexnet", "nonlinearity_problem", "conv4's output reaches conv5"),
    (Pool2x2, "alexnet", "pooling_problem", "max-pool 1 (self.features.2 (nn.MaxPool2d)) is 2x2 with stride 2"),
    (Pool2x2, "alexnet", "paper_problem", "max-pool 1 (self.features.2 (nn.MaxPool2d)) is 2x2"),
    (AvgPool, "alexnet", "pooling_problem", "pool 1 (self.features.2 (nn.AvgPool2d)) is an average pool"),
    (Stride2, "alexnet", "paper_problem", "conv1 (self.features.0 (nn.Conv2d)) has stride 2"),
    (Stride2, "alexnet", "equivalence_problem", "conv1 (self.features.0 (nn.Conv2d)) has stride 2"),
    (TimesTwo, "alexnet", "paper_problem", "after conv5, forward() computes a multiplication"),
    (LRNAfterConv5, "alexnet", "paper_problem", "after conv5, the paper has a ReLU"),
    (Detached, "alexnet", "detach_problem", "detaches the activations after conv5"),
    (VGGNoReLU, "vgg16", "nonlinearity_problem", "conv3_2's output reaches conv3_3"),
    (VGGSharedConv, "vgg16", "paper_problem", "conv5_2 (self.features.26) reuses the weights of"),
    (ExtraPool, "alexnet", "pooling_problem", "forward() uses 4 max-pools; AlexNet has 3"),
    (Adaptive5x5, "alexnet", "paper_problem", "the adaptive average pool after conv5 gives "
     "5x5 feature maps; the paper's are 6x6 there"),
    (Fc4, "alexnet", "paper_problem", "after fc3, forward() applies another linear layer "
     "(self.classifier.7 (nn.Linear)); AlexNet ends with fc3"),
    (NoFc3, "alexnet", "paper_problem", "forward() ends after fc2; the paper's network "
     "continues with fc3: nn.Linear(4096, 1000)"),
    (Fc1WithoutBias, "alexnet", "paper_problem",
     "fc1 (self.classifier.1 (nn.Linear)) has no bias; the paper's fc1 is nn.Linear(9216, 4096)"),
    (Conv2Kernel1x25, "alexnet", "paper_problem",
     "conv2 (self.features.3 (nn.Conv2d)) has weights of shape (256, 96, 1, 25); the paper's"),
]


@pytest.mark.parametrize(("cls", "model", "name", "words"), DEFECTS,
                         ids=[f"{d[0].__name__}-{d[2]}" for d in DEFECTS])
def test_defect_is_rejected(cls: type, model: str, name: str, words: str) -> None:
    size = FULL[model] if name == "equivalence_problem" or model == "alexnet" else 32
    message = check(name, graph_of(cls, size), model)
    assert message is not None and words in message, message


def test_stages_raise_departure_off_the_chain() -> None:
    with pytest.raises(analysis.Departure, match="after conv5, forward"):
        analysis.stages(graph_of(TimesTwo, 227), "alexnet")


def test_numeric_check_finds_a_wrong_normalisation() -> None:
    """A shifted LRN window passes the structure; only the numbers show it, at the LRN."""
    data = copy.deepcopy(describe(LRNAlexNet, 227))
    pad = next(n for n in data["nodes"] if n["op"] in ("aten.pad.default",
                                                       "aten.constant_pad_nd.default"))
    pad["args"][1] = [0, 0, 0, 0, 4, 0]
    graph = load_graph(data)
    assert analysis.paper_problem(graph, "alexnet") is None
    message = analysis.equivalence_problem(graph, "alexnet")
    assert message is not None
    assert message.startswith("the local response normalisation after conv1 computes"), message


def test_sigmoid_is_rebuilt_and_named_where_the_student_wrote_it() -> None:
    """A sigmoid is in the rebuild's vocabulary: the description loads, and the paper's
    chain names the function and the student's line, never an ATen name."""
    class Sigmoid(AlexNetRef):
        def forward(self, x):
            return torch.sigmoid(super().forward(x))

    message = analysis.paper_problem(load_graph(describe(Sigmoid, 227)), "alexnet")
    assert "a sigmoid at forward(), line `return torch.sigmoid(super().forward(x))`" in message
    assert "aten" not in message


class TorchvisionAlexNet(torchvision.models.AlexNet):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(num_classes=num_classes)


class TorchvisionVGG16(nn.Module):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.net = torchvision.models.vgg16(weights=None, num_classes=num_classes)

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize(("cls", "paths"), [(TorchvisionAlexNet, [""]),
                                            (TorchvisionVGG16, ["net"])])
def test_torchvision_models_are_found(cls: type, paths: list[str]) -> None:
    assert analysis.torchvision_modules(graph_of(cls, 64)) == paths


@pytest.mark.parametrize(("size", "flatten"), [
    ((-1, 9216), True), ("batch", True), ((2, 9216), False), ((1, 18432), False),
    ((-1, -1), False)], ids=["-1,9216", "x.size(0),-1", "2,9216", "1,18432", "-1,-1"])
def test_only_a_reshape_that_keeps_the_batch_is_a_flatten(size, flatten) -> None:
    """``view(-1, 9216)`` and ``view(x.size(0), -1)`` flatten each image; a first size
    written as a number (a description that says so, or a batch of 2 read as a literal)
    mixes the images of a batch and is named as the departure it is."""
    data = copy.deepcopy(describe(AlexNetRef, 227))
    node = next(n for n in data["nodes"] if n["op"] == "aten.flatten.using_ints")
    if size == "batch":
        data["nodes"].insert(0, {"name": "n", "kind": "call_function",
                                 "op": "aten.sym_size.int", "args": [{"input": 0}, 0],
                                 "kwargs": {}, "shape": None, "module": "", "line": ""})
        size = ({"node": "n"}, -1)
    node.update(op="aten.view.default", args=[node["args"][0], list(size)],
                line="x = x.view(...)")
    message = analysis.paper_problem(load_graph(data), "alexnet")
    if flatten:
        assert message is None, message
    else:
        assert message is not None and "x = x.view(...)" in message, message
