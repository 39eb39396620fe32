"""The grader's hidden checks: the reference passes every part; wrong models lose exactly
the parts they should (profile ci)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hidden_checks import grade
from hidden_checks.calibrate import Run, _gated, _graded, defective, verdict, without_relus
from hidden_checks.reference import load_reference

REF = load_reference()
AlexNetRef, VGG16Ref = REF["alexnet"], REF["vgg16"]
SHAPE_PARTS = ("parameters", "logits", "feature_maps")


def outcome(part: str, model: str, cls: type) -> str | None:
    """None if the part passes, else its message."""
    try:
        getattr(grade, part)(model, cls)
    except AssertionError as error:
        return str(error)
    return None


# ----------------------------------------------------------------------------- defective models
class NarrowConv2(AlexNetRef):
    """conv2 with 128 instead of 256 filters (conv3 adapted so that it still runs)."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[3] = nn.Conv2d(96, 128, kernel_size=5, padding=2)
        self.features[6] = nn.Conv2d(128, 384, kernel_size=3, padding=1)


class Stride2(AlexNetRef):
    """conv1 with stride 2 instead of 4."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[0].stride = (2, 2)


class NoReLU(AlexNetRef):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        without_relus(self)


NoReLUVGG = defective(VGG16Ref)  # the calibration's: no ReLUs, stride-2 first convolution


class Detached(AlexNetRef):
    """forward() cuts the graph between the convolutions and the classifier."""

    def forward(self, x):
        x = self.features(x).detach()
        return self.classifier(torch.flatten(self.avgpool(x), 1))


class NoGrad(AlexNetRef):
    def forward(self, x):
        with torch.no_grad():
            return super().forward(x)


class Always1000(AlexNetRef):
    """Ignores num_classes."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, 1000)


class FakeCounts(nn.Module):
    """A tiny network that claims AlexNet's parameter count every way it can."""

    CLAIM = 62_378_344

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))

    def parameters(self, recurse=True):
        yield nn.Parameter(torch.empty(self.CLAIM, device="meta"))

    def named_parameters(self, *args, **kwargs):
        yield "fake", next(self.parameters())

    def state_dict(self, *args, **kwargs):
        return {"fake": next(self.parameters())}

    def __len__(self):
        return self.CLAIM

    def numel(self):
        return self.CLAIM


class PaddedFake(AlexNetRef):
    """The right layers with conv2 too narrow, padded with a dummy tensor to the right total."""

    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__(in_channels, num_classes)
        self.features[3] = nn.Conv2d(96, 128, kernel_size=5, padding=2)
        self.features[6] = nn.Conv2d(128, 384, kernel_size=3, padding=1)
        missing = (614_400 + 256) - (307_200 + 128) + (384 * 256 * 9) - (384 * 128 * 9)
        self.padding = nn.Parameter(torch.zeros(missing))


# ----------------------------------------------------------------------------- reference
@pytest.mark.parametrize("model, cls", [("alexnet", AlexNetRef), ("vgg16", VGG16Ref)])
def test_reference_passes_shape_parts(model, cls, capfd):
    for part in SHAPE_PARTS:
        assert outcome(part, model, cls) is None, part
    out, err = capfd.readouterr()
    assert err == "", err  # nbgrader gives 0 points to a cell that writes to stderr
    assert "parameter counts correct" in out


@pytest.mark.slow
@pytest.mark.parametrize("model, cls", [("alexnet", AlexNetRef), ("vgg16", VGG16Ref)])
def test_reference_trains_and_reaches_ci_accuracy(model, cls, capfd):
    assert outcome("trainable", model, cls) is None
    assert outcome("accuracy", model, cls) is None
    out, err = capfd.readouterr()
    assert err == ""
    assert "graded with profile ci" in out and "test accuracy" in out


def test_reference_is_the_master_notebook():
    with torch.device("meta"):
        assert sum(p.numel() for p in AlexNetRef().parameters()) == 62_378_344
        assert sum(p.numel() for p in VGG16Ref(1, 10).parameters()) == 134_300_362


# ----------------------------------------------------------------------------- wrong models
def test_narrow_conv2_loses_parameters_and_feature_maps_only():
    message = outcome("parameters", "alexnet", NarrowConv2)
    assert message and "conv2 has 307,200 weights, expected 614,400" in message
    assert "in_channels=96" in message and "5x5" in message
    maps = outcome("feature_maps", "alexnet", NarrowConv2)
    assert maps and "max-pool 2 is 128 x 13 x 13, expected 256 x 13 x 13" in maps
    assert outcome("logits", "alexnet", NarrowConv2) is None
    assert outcome("trainable", "alexnet", NarrowConv2) is None


def test_wrong_stride_loses_feature_maps_only():
    message = outcome("feature_maps", "alexnet", Stride2)
    assert message and "max-pool 1 is 96 x 54 x 54, expected 96 x 27 x 27" in message
    assert "stride 4" in message
    assert outcome("parameters", "alexnet", Stride2) is None
    assert outcome("logits", "alexnet", Stride2) is None


def test_missing_relu_loses_accuracy_only():
    for part in SHAPE_PARTS:
        assert outcome(part, "alexnet", NoReLU) is None, part
    message = outcome("accuracy", "alexnet", NoReLU)
    assert message and "no activation between conv1 and the next layer" in message


def test_defective_vgg16_loses_accuracy_and_feature_maps():
    assert outcome("accuracy", "vgg16", NoReLUVGG)
    assert outcome("feature_maps", "vgg16", NoReLUVGG)
    assert outcome("parameters", "vgg16", NoReLUVGG) is None


@pytest.mark.parametrize("cls", [FakeCounts, PaddedFake])
def test_faked_parameter_counts_gain_nothing(cls):
    message = outcome("parameters", "alexnet", cls)
    assert message, "a faked count passed"
    if cls is PaddedFake:
        assert "conv2 has" in message


@pytest.mark.parametrize("cls", [Detached, NoGrad])
def test_cut_graph_loses_trainable(cls):
    message = outcome("trainable", "alexnet", cls)
    assert message and ("no gradient" in message or "not connected" in message)
    assert outcome("parameters", "alexnet", cls) is None


def test_wrong_number_of_classes_loses_logits():
    message = outcome("logits", "alexnet", Always1000)
    assert message and "expected (1, 10)" in message
    assert outcome("feature_maps", "alexnet", Always1000) is None


def test_unimplemented_model_fails_with_a_hint():
    class Todo(nn.Module):
        def __init__(self, in_channels=3, num_classes=1000):
            super().__init__()
            raise NotImplementedError()

    for part in ("parameters", "logits", "feature_maps"):
        message = outcome(part, "alexnet", Todo)
        assert message and "NotImplementedError" in message


# ----------------------------------------------------------------------------- switches
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_require_gpu_switch_refuses_without_cuda(monkeypatch):
    monkeypatch.setenv("CNN_GRADER_REQUIRE_GPU", "1")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        grade.accuracy("alexnet", AlexNetRef)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_full_profile_refuses_without_cuda():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        grade.accuracy("alexnet", AlexNetRef, profile="full")


# ----------------------------------------------------------------------------- calibration
def test_calibration_verdict_names_each_problem():
    ok = [Run("alexnet", "reference", 0, 0.50, 1.0, False),
          Run("alexnet", "defective", 0, 0.70, 1.0, True)]
    assert verdict(ok, 0.45) == []
    thin = [Run("alexnet", "reference", 1, 0.46, 1.0, False)]
    assert verdict(thin, 0.45) == ["reference seed 1: 0.4600 < threshold 0.45 + 0.02"]
    slipping = [Run("alexnet", "defective", 0, 0.70, 1.0, False)]
    assert "not rejected by the nonlinearity gate" in verdict(slipping, 0.45)[0]
    assert verdict([Run("alexnet", "defective", 0, 0.30, 1.0, False)], 0.45) == []


def test_calibration_defect_is_rejected_by_the_gate_and_the_feature_maps():
    bad = defective(AlexNetRef)
    assert _gated("alexnet", bad) and not _gated("alexnet", AlexNetRef)
    assert outcome("feature_maps", "alexnet", bad)


def test_calibration_counts_a_crash_in_training_as_zero():
    # at 32x32 the stride-2 VGG16's maps vanish before the 5th pool: training raises
    assert _graded("vgg16", NoReLUVGG, "ci", 0) == 0.0
