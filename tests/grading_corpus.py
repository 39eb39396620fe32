"""A corpus of student networks for the fairness tests (tests/test_fair_grading.py).

Each entry is a network a careful, careless or hostile student could hand in: other
spellings of the papers' networks, common bugs, and tricks. ``rules`` names, per part,
the stricter rule of grader/CHECKS.md ("Stricter rules") that makes the hidden part
fail although the visible test passes; ``fails`` lists parts whose visible test fails
too and whose hidden part must fail; ``lenient`` parts whose visible test fails (it looks
for nn.MaxPool2d modules) while the hidden part, reading the computation, passes. Every
other part must pass. Networks in one
``group`` compute the same function and must get the same grade.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnn_grader.hidden_checks.calibrate import with_lrn
from cnn_grader.hidden_checks.reference import load_reference

REF = load_reference()
AlexNetRef, VGG16Ref = REF["alexnet"], REF["vgg16"]
PARTS = ("parameters", "logits", "feature_maps", "trainable", "accuracy")
ALL = set(PARTS)


@dataclass(frozen=True, eq=False)  # hashed by identity: one entry, one network
class Net:
    name: str
    model: str  # "alexnet" or "vgg16"
    cls: type
    rules: dict[str, str] = field(default_factory=dict)  # part -> stricter rule
    fails: frozenset[str] = frozenset()  # parts whose visible test fails too
    lenient: frozenset[str] = frozenset()  # visible test fails, the hidden part reads
    # the computation and passes (F.max_pool2d is no nn.MaxPool2d for the visible trace)
    group: str | None = None  # same function as the others of the group


def edited(base: type, change: Callable[[nn.Module], None], name: str) -> type:
    """``base`` whose constructor ends with ``change(self)``."""
    def __init__(self, in_channels=3, num_classes=1000):
        base.__init__(self, in_channels, num_classes)
        change(self)
    return type(name, (base,), {"__init__": __init__})


def with_forward(base: type, forward: Callable, name: str) -> type:
    return type(name, (base,), {"forward": forward})


def setitem(attr: str, index: int, module: nn.Module | Callable[[nn.Module], nn.Module]):
    def change(self):
        seq = getattr(self, attr)
        seq[index] = module(seq) if callable(module) and not isinstance(module, nn.Module) \
            else module
    return change


def replace_all(kind: type, make: Callable[[nn.Module], nn.Module]):
    """Replace every module of class ``kind`` in features and classifier."""
    def change(self):
        for seq in (self.features, self.classifier):
            for i, m in enumerate(seq):
                if type(m) is kind:
                    seq[i] = make(m)
    return change


def insert_after(kind: type, make: Callable[[nn.Module], nn.Module], where: str = "features",
                 only: int | None = None):
    """Insert ``make(m)`` after each (or the ``only``-th) module of class ``kind``."""
    def change(self):
        layers, seen = [], 0
        for m in getattr(self, where):
            layers.append(m)
            if type(m) is kind:
                if only is None or seen == only:
                    layers.append(make(m))
                seen += 1
        setattr(self, where, nn.Sequential(*layers))
    return change


def functional_forward(pool: Callable, relu: Callable = F.relu, flatten: Callable | None = None):
    """A forward over the layers with functional ReLUs and pools (modules stay for weights)."""
    def forward(self, x):
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                x = m(x)
            elif isinstance(m, nn.ReLU):
                x = relu(x)
            elif isinstance(m, nn.MaxPool2d):
                x = pool(x, m.kernel_size, m.stride)
        x = self.avgpool(x)
        x = flatten(x) if flatten else torch.flatten(x, 1)
        return self.classifier(x)
    return forward


def tail_forward(tail: Callable):
    def forward(self, x):
        x = self.avgpool(self.features(x))
        return tail(self, self.classifier(torch.flatten(x, 1)))
    return forward


# ----------------------------------------------------------------------------- AlexNet
class AlexNetAttributes(nn.Module):
    """Attributes, F.relu, F.max_pool2d, x.view: no nn.Sequential at all."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 96, 11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((6, 6))
        self.fc1, self.fc2 = nn.Linear(9216, 4096), nn.Linear(4096, 4096)
        self.fc3 = nn.Linear(4096, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 3, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 3, 2)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2)
        x = self.pool(x).view(x.size(0), -1)
        x = F.relu(self.fc1(F.dropout(x, 0.5, self.training)))
        x = F.relu(self.fc2(F.dropout(x, 0.5, self.training)))
        return self.fc3(x)


class AlexNetForwardMisspelt(nn.Module):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.features = AlexNetRef(in_channels, num_classes).features
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = AlexNetRef(in_channels, num_classes).classifier

    def foward(self, x):  # the typo a careless student makes
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class AlexNetStub(nn.Module):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        raise NotImplementedError()

    def forward(self, x):
        raise NotImplementedError()


class AlexNetSplitConv1(AlexNetAttributes):
    """conv1 as two halves of 48 filters, concatenated: the same count, another table."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.conv1 = None
        self.conv1a = nn.Conv2d(in_channels, 48, 11, stride=4)
        self.conv1b = nn.Conv2d(in_channels, 48, 11, stride=4)

    def forward(self, x):
        x = torch.cat([self.conv1a(x), self.conv1b(x)], 1)
        x = F.max_pool2d(F.relu(x), 3, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 3, 2)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2)
        x = torch.flatten(self.pool(x), 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class AlexNetResidual(AlexNetAttributes):
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 3, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 3, 2)
        x = F.relu(self.conv3(x))
        x = x + F.relu(self.conv4(x))  # a residual connection the paper does not have
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2)
        x = torch.flatten(self.pool(x), 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class AlexNetUnknownOp(AlexNetAttributes):
    """torch.erf is outside the rebuild's vocabulary; it acts after every pool."""

    def forward(self, x):
        return torch.erf(super().forward(x))


class AlexNetBuffer(AlexNetAttributes):
    """A registered buffer of the student's own: the grader cannot know its values."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.register_buffer("scale", torch.ones(1))

    def forward(self, x):
        return super().forward(x) * self.scale


class AlexNetTorchvision(torchvision.models.AlexNet):
    """torchvision's class with the paper's layers put in: every visible test passes."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(num_classes=num_classes)
        self.features = AlexNetRef(in_channels, num_classes).features


class AlexNetDetached(AlexNetRef):
    def forward(self, x):
        x = self.features(x).detach()
        return self.classifier(torch.flatten(self.avgpool(x), 1))


class AlexNetBatchOf8(AlexNetRef):
    """The batch of the visible logits test hard-coded in the flatten."""

    def forward(self, x):
        x = self.avgpool(self.features(x)).view(8, -1)
        return self.classifier(x)


class AlexNetNoGrad(AlexNetRef):
    """Gradients switched off around the whole forward (issue 27): it cannot train."""

    @torch.no_grad()
    def forward(self, x):
        return super().forward(x)


class AlexNetInferenceMode(AlexNetRef):
    """forward() in torch.inference_mode(), which the export does not show: it cannot train."""

    @torch.inference_mode()
    def forward(self, x):
        return super().forward(x)


class AlexNetReturnsFeatures(AlexNetRef):
    """The logits and the feature maps, as a tuple (issue 27)."""

    def forward(self, x):
        maps = self.features(x)
        return self.classifier(torch.flatten(self.avgpool(maps), 1)), maps


class AlexNetDropoutAlwaysOn(AlexNetRef):
    """F.dropout without training=self.training: on in eval mode too (issue 27)."""

    def forward(self, x):
        fc1, relu1, fc2, relu2, fc3 = (self.classifier[i] for i in (1, 2, 4, 5, 6))
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        x = relu1(fc1(F.dropout(x, 0.5)))
        x = relu2(fc2(F.dropout(x, 0.5)))
        return fc3(x)


class AlexNetDropoutFollowsMode(AlexNetRef):
    def forward(self, x):
        fc1, relu1, fc2, relu2, fc3 = (self.classifier[i] for i in (1, 2, 4, 5, 6))
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        x = relu1(fc1(F.dropout(x, 0.5, training=self.training)))
        x = relu2(fc2(F.dropout(x, 0.5, training=self.training)))
        return fc3(x)


def _no_adaptive(self):
    self.avgpool = nn.Identity()


A = "alexnet"
PAPER_A = "alexnet-paper"
# Moves that change nothing the grader computes, at the top of forward() (issue 27):
# the same network as the reference, so the same grade.
NO_OP_MOVES = {
    "to-parameters-device": lambda self, x: x.to(next(self.parameters()).device),
    "channels-last": lambda self, x: x.contiguous(memory_format=torch.channels_last),
    "float-type_as-weight": lambda self, x: x.float().type_as(next(self.parameters())),
    "to-a-weight": lambda self, x: x.to(next(self.parameters())),
}


def moved_first(base: type, name: str) -> type:
    move = NO_OP_MOVES[name]
    return with_forward(base, lambda self, x: base.forward(self, move(self, x)), name)


ALEXNETS = [
    Net("reference", A, AlexNetRef, group=PAPER_A),
    *[Net(name, A, moved_first(AlexNetRef, name), group=PAPER_A) for name in NO_OP_MOVES],
    Net("attributes-functional", A, AlexNetAttributes, lenient={"feature_maps"}, group=PAPER_A),
    Net("relu-method-inplace", A, edited(AlexNetRef, replace_all(nn.ReLU, lambda m: nn.ReLU()),
                                         "ReluNotInplace"), group=PAPER_A),
    Net("relu-x.relu_()", A, with_forward(AlexNetRef, functional_forward(
        F.max_pool2d, relu=lambda x: x.relu_()), "ReluMethod"), lenient={"feature_maps"},
        group=PAPER_A),
    Net("relu-clamp", A, with_forward(AlexNetRef, functional_forward(
        F.max_pool2d, relu=lambda x: x.clamp(min=0)), "Clamp"), lenient={"feature_maps"},
        group=PAPER_A),
    Net("relu-threshold", A, with_forward(AlexNetRef, functional_forward(
        F.max_pool2d, relu=lambda x: F.threshold(x, 0.0, 0.0)), "Threshold"),
        lenient={"feature_maps"}, group=PAPER_A),
    Net("relu-inplace-functional", A, with_forward(AlexNetRef, functional_forward(
        F.max_pool2d, relu=lambda x: F.relu(x, inplace=True)), "ReluInplace"),
        lenient={"feature_maps"}, group=PAPER_A),
    Net("lrn-paper", A, with_lrn(AlexNetRef)),
    Net("zeropad-module", A, edited(AlexNetRef, lambda self: [
        setitem("features", 3, nn.Sequential(nn.ZeroPad2d(2), nn.Conv2d(96, 256, 5)))(self)],
        "ZeroPad"), group=PAPER_A),
    Net("F.pad-in-forward", A, with_forward(AlexNetAttributes, lambda self, x: self.fc3(F.relu(
        self.fc2(F.relu(self.fc1(torch.flatten(self.pool(F.max_pool2d(F.relu(self.conv5(F.relu(
            self.conv4(F.relu(F.conv2d(F.pad(F.max_pool2d(F.relu(self.conv2(F.max_pool2d(F.relu(
                self.conv1(x)), 3, 2))), 3, 2), (1, 1, 1, 1)), self.conv3.weight,
                self.conv3.bias)))))), 3, 2)), 1)))))), "FPad"), lenient={"feature_maps"},
        group=PAPER_A),
    Net("F.pad-columns-in-forward", A, with_forward(AlexNetAttributes, lambda self, x: self.fc3(
        F.relu(self.fc2(F.relu(self.fc1(torch.flatten(self.pool(F.max_pool2d(F.relu(self.conv5(
            F.relu(self.conv4(F.relu(F.conv2d(F.pad(F.max_pool2d(F.relu(self.conv2(F.max_pool2d(
                F.relu(self.conv1(x)), 3, 2))), 3, 2), (1, 1)), self.conv3.weight,
                self.conv3.bias, padding=(1, 0))))))), 3, 2)), 1)))))), "FPadColumns"),
        lenient={"feature_maps"}, group=PAPER_A),
    Net("pool-ceil-mode", A, edited(AlexNetRef, replace_all(
        nn.MaxPool2d, lambda m: nn.MaxPool2d(3, 2, ceil_mode=True)), "Ceil"), group=PAPER_A),
    Net("pool-return-indices", A, with_forward(
        edited(AlexNetRef, replace_all(nn.MaxPool2d, lambda m: nn.MaxPool2d(
            3, 2, return_indices=True)), "Indices"),
        lambda self, x: self.classifier(torch.flatten(self.avgpool(_run_with_indices(
            self.features, x)), 1)), "IndicesForward"), lenient={"feature_maps"},
        group=PAPER_A),
    Net("pool-explicit-arguments", A, edited(AlexNetRef, replace_all(
        nn.MaxPool2d, lambda m: nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=0,
                                             dilation=1)), "PoolArgs"), group=PAPER_A),
    Net("identity-modules", A, edited(AlexNetRef, insert_after(nn.Conv2d, lambda m: nn.Identity()),
                                      "Identities"), group=PAPER_A),
    Net("no-dropout", A, edited(AlexNetRef, replace_all(nn.Dropout, lambda m: nn.Identity()),
                                "NoDropout"), group=PAPER_A),
    Net("F.dropout-training=self.training", A, AlexNetDropoutFollowsMode, group=PAPER_A),
    Net("dropout-variants", A, edited(AlexNetRef, lambda self: [
        setitem("classifier", 0, nn.AlphaDropout(0.5))(self),
        setitem("classifier", 3, nn.Dropout(p=0.3))(self)], "DropoutVariants"), group=PAPER_A),
    Net("nn.Flatten-reshape", A, with_forward(AlexNetRef, lambda self, x: self.classifier(
        nn.Flatten()(self.avgpool(self.features(x))).reshape(x.shape[0], -1)), "Flatten"),
        group=PAPER_A),
    Net("flatten-view-len(x)", A, with_forward(AlexNetRef, lambda self, x: self.classifier(
        self.avgpool(self.features(x)).view(len(x), -1)), "ViewLen"), group=PAPER_A),
    Net("flatten-reshape-int(x.size(0))", A, with_forward(AlexNetRef, lambda self, x: (
        self.classifier(self.avgpool(self.features(x)).reshape(int(x.size(0)), 256 * 6 * 6))),
        "ReshapeInt"), group=PAPER_A),
    Net("adaptive-max-pool", A, edited(AlexNetRef, lambda self: setattr(
        self, "avgpool", nn.AdaptiveMaxPool2d((6, 6))), "AdaptiveMax"), group=PAPER_A),
    Net("log-softmax-output", A, with_forward(AlexNetRef, tail_forward(
        lambda self, x: F.log_softmax(x, dim=1)), "LogSoftmax")),
    Net("prints-and-warns", A, with_forward(AlexNetRef, lambda self, x: (
        print("forward!"), AlexNetRef.forward(self, x))[1], "Prints"), group=PAPER_A),
    # other computations: judged by what differs
    Net("softmax-output", A, with_forward(AlexNetRef, tail_forward(
        lambda self, x: F.softmax(x, dim=1)), "Softmax"),
        rules={"logits": "raw-logits", "accuracy": "paper-computation"}),
    Net("nn.Softmax-in-classifier", A, edited(AlexNetRef, lambda self: self.classifier.append(
        nn.Softmax(dim=1)), "SoftmaxModule"),
        rules={"logits": "raw-logits", "accuracy": "paper-computation"}),
    Net("leaky-relu", A, edited(AlexNetRef, replace_all(nn.ReLU, lambda m: nn.LeakyReLU(0.1)),
                                "Leaky"), rules={"accuracy": "paper-computation"}),
    Net("gelu", A, edited(AlexNetRef, replace_all(nn.ReLU, lambda m: nn.GELU()), "Gelu"),
        rules={"accuracy": "paper-computation"}),
    Net("tanh", A, edited(AlexNetRef, replace_all(nn.ReLU, lambda m: nn.Tanh()), "Tanh"),
        rules={"accuracy": "paper-computation"}),
    Net("batchnorm-no-affine", A, edited(AlexNetRef, insert_after(
        nn.Conv2d, lambda m: nn.BatchNorm2d(m.out_channels, affine=False)), "BNNoAffine"),
        rules={"accuracy": "paper-computation"}),
    Net("batchnorm", A, edited(AlexNetRef, insert_after(
        nn.Conv2d, lambda m: nn.BatchNorm2d(m.out_channels)), "BN"),
        fails={"parameters"}, rules={"accuracy": "paper-computation"}),
    Net("reflection-pad", A, edited(AlexNetRef, lambda self: setitem(
        "features", 3, nn.Sequential(nn.ReflectionPad2d(2), nn.Conv2d(96, 256, 5)))(self),
        "ReflectPad"), rules={"accuracy": "paper-computation"}),
    Net("dropout-in-features", A, edited(AlexNetRef, insert_after(
        nn.Conv2d, lambda m: nn.Dropout(0.1), only=2), "DropFeatures"),
        rules={"accuracy": "paper-computation"}),
    Net("residual", A, AlexNetResidual, lenient={"feature_maps"},
        rules={"accuracy": "paper-computation"}),
    Net("split-conv1-cat", A, AlexNetSplitConv1, lenient={"feature_maps"},
        rules={"parameters": "paper-layers", "accuracy": "paper-computation"}),
    Net("pools-2x2", A, edited(AlexNetRef, replace_all(nn.MaxPool2d, lambda m: nn.MaxPool2d(2)),
                               "Pool2x2"),
        rules={"feature_maps": "pool-windows", "accuracy": "paper-computation"}),
    Net("relu-after-fc3", A, edited(AlexNetRef, lambda self: self.classifier.append(nn.ReLU()),
                                    "ReluLast"),
        rules={"logits": "raw-logits", "accuracy": "paper-computation"}),
    Net("detached-features", A, AlexNetDetached, rules={"trainable": "trainable-step"}),
    Net("no_grad-forward", A, AlexNetNoGrad, rules={"trainable": "trainable-step"}),
    Net("inference_mode-forward", A, AlexNetInferenceMode, rules={"trainable": "trainable-step"}),
    Net("F.dropout-always-on", A, AlexNetDropoutAlwaysOn, rules={"logits": "drops-in-eval"}),
    Net("returns-logits-and-features", A, AlexNetReturnsFeatures, fails={"logits"}),
    Net("unknown-operation", A, AlexNetUnknownOp, lenient={"feature_maps"},
        rules={"logits": "rebuild-vocabulary", "trainable": "rebuild-vocabulary",
               "accuracy": "paper-computation"}),
    Net("own-buffer", A, AlexNetBuffer, lenient={"feature_maps"},
        rules={"logits": "rebuild-vocabulary", "trainable": "rebuild-vocabulary",
               "accuracy": "paper-computation"}),
    Net("no-adaptive-pool", A, edited(AlexNetRef, _no_adaptive, "NoAdaptive"),
        rules={"trainable": "training-size", "accuracy": "training-size"}),
    Net("forward-misspelt", A, AlexNetForwardMisspelt, fails={"logits", "feature_maps"},
        rules={"trainable": "forward-needed", "accuracy": "forward-needed"}),
    Net("batch-of-8-hard-coded", A, AlexNetBatchOf8, fails={"feature_maps"},
        rules={"logits": "any-batch", "trainable": "any-batch", "accuracy": "any-batch"}),
    Net("stub", A, AlexNetStub, fails=frozenset(ALL)),
    Net("torchvision", A, AlexNetTorchvision, rules={p: "torchvision" for p in ALL}),
]


def _run_with_indices(features: nn.Sequential, x):
    for m in features:
        x = m(x)
        if isinstance(x, tuple):
            x, _indices = x
    return x


# ----------------------------------------------------------------------------- VGG16
class VGG16Blocks(nn.Module):
    """A ModuleList of convolutions, F.relu and F.max_pool2d, padding='same'."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        widths = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P",
                  512, 512, 512, "P"]
        self.convs, self.plan, channels = nn.ModuleList(), widths, in_channels
        for w in widths:
            if w != "P":
                self.convs.append(nn.Conv2d(channels, w, 3, padding="same"))
                channels = w
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                                  nn.Linear(25088, 4096), nn.ReLU(True), nn.Dropout(),
                                  nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                  nn.Linear(4096, num_classes))

    def forward(self, x):
        convs = iter(self.convs)
        for step in self.plan:
            x = F.max_pool2d(x, 2) if step == "P" else F.relu(next(convs)(x))
        return self.head(x)


V = "vgg16"
PAPER_V = "vgg16-paper"
VGG16S = [
    Net("reference", V, VGG16Ref, group=PAPER_V),
    Net("to-parameters-device", V, moved_first(VGG16Ref, "to-parameters-device"),
        group=PAPER_V),
    Net("modulelist-functional-same-padding", V, VGG16Blocks, lenient={"feature_maps"},
        group=PAPER_V),
    Net("padding-same-modules", V, edited(VGG16Ref, replace_all(nn.Conv2d, lambda m: nn.Conv2d(
        m.in_channels, m.out_channels, 3, padding="same")), "Same"), group=PAPER_V),
    Net("flatten-view-len(x)", V, with_forward(VGG16Ref, lambda self, x: self.classifier(
        self.avgpool(self.features(x)).view(len(x), -1)), "VViewLen"), group=PAPER_V),
    Net("pool-ceil-mode", V, edited(VGG16Ref, replace_all(
        nn.MaxPool2d, lambda m: nn.MaxPool2d(2, 2, ceil_mode=True)), "VCeil"), group=PAPER_V),
    Net("batchnorm (vgg16_bn)", V, edited(VGG16Ref, insert_after(
        nn.Conv2d, lambda m: nn.BatchNorm2d(m.out_channels)), "VBN"),
        fails={"parameters"}, rules={"accuracy": "paper-computation"}),
    Net("leaky-relu", V, edited(VGG16Ref, replace_all(nn.ReLU, lambda m: nn.LeakyReLU()),
                                "VLeaky"), rules={"accuracy": "paper-computation"}),
    Net("softmax-output", V, with_forward(VGG16Ref, tail_forward(
        lambda self, x: torch.softmax(x, -1)), "VSoftmax"),
        rules={"logits": "raw-logits", "accuracy": "paper-computation"}),
    Net("no-adaptive-pool", V, edited(VGG16Ref, _no_adaptive, "VNoAdaptive"),
        rules={"trainable": "training-size", "accuracy": "training-size"}),
]

CORPUS = ALEXNETS + VGG16S
