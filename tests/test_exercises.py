"""The exercises: self-checks pass right answers and fail wrong ones; student versions are fresh.

Every self-check in ``cnn_course.selfcheck`` is run against a correct implementation
(written here independently of the masters) and against deliberately wrong ones; a
check must return ``False`` and print ``FAIL`` for each wrong one. Exercises 1 and 3 have
a rule (no PyTorch convolution or pooling): solutions that break it must fail with the
rule's message, and the masters' own solutions must pass. Exercise 4's network is checked
against a specification: networks written in several styles must pass it, and wrong ones
must fail with a message that says what is wrong. The student notebooks must be exactly
what ``scripts/generate_exercises.py`` makes of the masters.
"""
from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnn_course import NAIVE_MIN_TEST_ACCURACY, get_profile, selfcheck, trace

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
MASTERS = sorted(SOLUTIONS.glob("exercise_*.ipynb"))
STUDENTS = sorted(EXERCISES.glob("exercise_*.ipynb"))


def _load_generator():
    spec = importlib.util.spec_from_file_location("generate_exercises",
                                                  ROOT / "scripts" / "generate_exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def run_check(check, candidate, capsys) -> tuple[bool, str]:
    result = check(candidate)
    return result, capsys.readouterr().out


def assert_pass(result: bool, out: str) -> None:
    assert result is True, out
    assert "FAIL" not in out, out
    assert out.rstrip().splitlines()[-1].startswith("PASS"), out


def assert_fail(result: bool, out: str) -> None:
    assert result is False, out
    assert "FAIL" in out, out
    assert out.rstrip().splitlines()[-1].startswith("FAIL"), out


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def notebook_functions(notebook: Path, *names: str) -> list:
    """The functions ``names`` as defined by the code cells of ``notebook`` that define them."""
    namespace = {"torch": torch, "F": F, "nn": nn}
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code" and any(f"def {name}(" in cell.source for name in names):
            exec(cell.source, namespace)
    return [namespace[name] for name in names]


def windows(x, kh, kw, stride):
    """Every kh x kw window of x [N, C, H, W] by advanced indexing: [N, C, H', W', kh, kw]."""
    _, _, h, w = x.shape
    rows = (torch.arange((h - kh) // stride + 1) * stride)[:, None] + torch.arange(kh)
    cols = (torch.arange((w - kw) // stride + 1) * stride)[:, None] + torch.arange(kw)
    return x[:, :, rows[:, None, :, None], cols[None, :, None, :]]


def assert_rule_broken(result: bool, out: str, task: str, function: str) -> None:
    """A check stopped at the first case with the rule's message naming ``function``."""
    assert_fail(result, out)
    assert f"{task}: {function} is switched off while the self-check runs (" in out, out
    assert len(out.splitlines()) == 2, out  # one explanation, one summary


# --------------------------------------------------------------------------- conv2d
def conv_good(x, w, b=None, stride=1, padding=0):
    """Convolution by gathering the windows and one einsum (independent of the master's loops)."""
    patches = windows(F.pad(x, (padding,) * 4), w.shape[2], w.shape[3], stride)
    out = torch.einsum("ncijpq,fcpq->nfij", patches, w)
    return out if b is None else out + b.view(1, -1, 1, 1)


def conv_flipped(x, w, b=None, stride=1, padding=0):
    """True convolution: the filter rotated by 180 degrees."""
    return conv_good(x, w.flip(-1, -2), b, stride, padding)


def conv_ignores_padding(x, w, b=None, stride=1, padding=0):
    return conv_good(x, w, b, stride, 0)


def conv_pads_one_side(x, w, b=None, stride=1, padding=0):
    x = F.pad(x, (padding, 0, padding, 0))
    return conv_good(x, w, b, stride, 0)


def conv_ignores_stride(x, w, b=None, stride=1, padding=0):
    return conv_good(x, w, b, 1, padding)


def conv_without_bias(x, w, b=None, stride=1, padding=0):
    return conv_good(x, w, None, stride, padding)


def conv_float32(x, w, b=None, stride=1, padding=0):
    """Right up to float32 rounding, which the 1e-5 tolerance accepts."""
    return conv_good(x.float(), w.float(), b.float(), stride, padding)


def test_conv2d_check_passes_a_correct_convolution(capsys):
    assert_pass(*run_check(selfcheck.check_conv2d, conv_good, capsys))
    assert_pass(*run_check(selfcheck.check_conv2d, conv_float32, capsys))


@pytest.mark.parametrize("wrong", [conv_flipped, conv_ignores_padding, conv_pads_one_side,
                                   conv_ignores_stride, conv_without_bias])
def test_conv2d_check_fails_a_wrong_convolution(wrong, capsys):
    assert_fail(*run_check(selfcheck.check_conv2d, wrong, capsys))


CONV_TASK = "exercise 1 asks you to compute the convolution yourself"


def conv_by_unfold(x, w, b=None, stride=1, padding=0):
    """Unfold + matrix product: right, but unfold does the work."""
    n, _, h, wd = x.shape
    f, _, hh, ww = w.shape
    out = w.reshape(f, -1) @ F.unfold(x, (hh, ww), padding=padding, stride=stride)
    h_out = (h + 2 * padding - hh) // stride + 1
    return (out + b.view(1, f, 1)).reshape(n, f, h_out, -1)


def conv_by_tensor_unfold(x, w, b=None, stride=1, padding=0):
    xp = F.pad(x, (padding,) * 4)
    patches = xp.unfold(2, w.shape[2], stride).unfold(3, w.shape[3], stride)
    return torch.einsum("ncijpq,fcpq->nfij", patches, w) + b.view(1, -1, 1, 1)


def conv_by_module(x, w, b=None, stride=1, padding=0):
    conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], stride, padding, dtype=x.dtype)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        return conv(x)


@pytest.mark.parametrize("forbidden, function", [
    (lambda x, w, b=None, stride=1, padding=0: F.conv2d(x, w, b, stride, padding), "F.conv2d"),
    (lambda x, w, b=None, stride=1, padding=0: torch.conv2d(x, w, b, stride, padding),
     "torch.conv2d"),
    (conv_by_module, "nn.Conv2d"),
    (conv_by_unfold, "F.unfold"),
    (conv_by_tensor_unfold, "torch.Tensor.unfold"),
])
def test_conv2d_check_fails_a_convolution_by_pytorch(forbidden, function, capsys):
    assert_rule_broken(*run_check(selfcheck.check_conv2d, forbidden, capsys), CONV_TASK, function)


def test_conv2d_check_passes_the_masters_loops(capsys):
    conv2d, = notebook_functions(SOLUTIONS / "exercise_01_conv2d.ipynb", "conv2d")
    assert_pass(*run_check(selfcheck.check_conv2d, conv2d, capsys))


def _resolve(path: str) -> object:
    root, *rest = path.split(".")
    return functools.reduce(getattr, rest, {"torch": torch, "F": F, "nn": nn}[root])


@pytest.mark.parametrize("rule", [selfcheck.CONV_RULE, selfcheck.POOL_RULE],
                         ids=["exercise 1", "exercise 3"])
def test_rules_switch_functions_off_and_restore_them(rule):
    before = {path: _resolve(path) for path in rule.forbidden}
    with pytest.raises(KeyError), selfcheck.switched_off(rule):
        for path in rule.forbidden:
            with pytest.raises(selfcheck.ForbiddenFunctionError, match=re.escape(rule.task)):
                _resolve(path)(torch.zeros(1, 1, 4, 4))
        raise KeyError("the body fails")
    assert {path: _resolve(path) for path in rule.forbidden} == before
    assert "unfold" not in vars(torch.Tensor) and "as_strided" not in vars(torch.Tensor)
    assert torch.arange(4.0).unfold(0, 2, 2).tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_conv2d_check_reports_expected_and_actual(capsys):
    _, out = run_check(selfcheck.check_conv2d, conv_ignores_padding, capsys)
    assert "FAIL case 3" in out and "expected shape 2x4x7x7, got 2x4x5x5" in out
    _, out = run_check(selfcheck.check_conv2d, conv_flipped, capsys)
    assert re.search(r"FAIL case 2: .*relative error = \S+, should be < 1e-05", out)


# ---------------------------------------------------------------- output size
def size_good(n, f, stride=1, padding=0, dilation=1):
    span = dilation * (f - 1) + 1
    if span > n + 2 * padding or (n + 2 * padding - span) % stride:
        raise ValueError("does not fit")
    return (n + 2 * padding - span) // stride + 1


def size_off_by_one(n, f, stride=1, padding=0, dilation=1):
    return size_good(n, f, stride, padding, dilation) - 1


def size_floors_silently(n, f, stride=1, padding=0, dilation=1):
    return (n + 2 * padding - dilation * (f - 1) - 1) // stride + 1


def size_returns_float(n, f, stride=1, padding=0, dilation=1):
    return float(size_good(n, f, stride, padding, dilation))


def size_ignores_dilation(n, f, stride=1, padding=0, dilation=1):
    return size_good(n, f, stride, padding, 1)


def size_padding_once(n, f, stride=1, padding=0, dilation=1):
    return size_good(n - padding, f, stride, padding, dilation)


def size_raises_wrong_error(n, f, stride=1, padding=0, dilation=1):
    value = (n + 2 * padding - dilation * (f - 1) - 1) / stride + 1
    assert value == int(value), "does not fit"
    return int(value)


def test_output_size_check_passes_a_correct_function(capsys):
    assert_pass(*run_check(selfcheck.check_output_size, size_good, capsys))


@pytest.mark.parametrize("wrong", [size_off_by_one, size_floors_silently, size_returns_float,
                                   size_ignores_dilation, size_padding_once,
                                   size_raises_wrong_error])
def test_output_size_check_fails_a_wrong_function(wrong, capsys):
    assert_fail(*run_check(selfcheck.check_output_size, wrong, capsys))


def test_output_size_check_reports_expected_and_actual(capsys):
    _, out = run_check(selfcheck.check_output_size, size_off_by_one, capsys)
    assert "FAIL n=7, f=3, stride=1, padding=0, dilation=1: expected 5 (from nn.Conv2d), got 4" in out
    _, out = run_check(selfcheck.check_output_size, size_floors_silently, capsys)
    assert "FAIL n=7, f=3, stride=3, padding=0, dilation=1: expected ValueError" in out


def padding_good(f, dilation=1):
    span = dilation * (f - 1) + 1
    if span % 2 == 0:
        raise ValueError("no padding keeps the size")
    return span // 2


def padding_ignores_dilation(f, dilation=1):
    return padding_good(f)


def padding_rounds_even_filters(f, dilation=1):
    return dilation * (f - 1) // 2


def padding_returns_float(f, dilation=1):
    return (dilation * (f - 1)) / 2 if f % 2 else padding_good(f, dilation)


def padding_always_raises(f, dilation=1):
    raise ValueError("stride 1 never keeps the size")


def test_same_padding_check_passes_a_correct_function(capsys):
    assert_pass(*run_check(selfcheck.check_same_padding, padding_good, capsys))
    same_padding, = notebook_functions(SOLUTIONS / "exercise_02_output_size.ipynb",
                                       "same_padding")
    assert_pass(*run_check(selfcheck.check_same_padding, same_padding, capsys))


@pytest.mark.parametrize("wrong", [padding_ignores_dilation, padding_rounds_even_filters,
                                   padding_returns_float, padding_always_raises])
def test_same_padding_check_fails_a_wrong_function(wrong, capsys):
    assert_fail(*run_check(selfcheck.check_same_padding, wrong, capsys))


def test_same_padding_check_reports_expected_and_actual(capsys):
    _, out = run_check(selfcheck.check_same_padding, padding_rounds_even_filters, capsys)
    assert ("FAIL f=4, dilation=1: expected ValueError (no padding makes nn.Conv2d keep 32x32), "
            "got 1") in out
    _, out = run_check(selfcheck.check_same_padding, padding_ignores_dilation, capsys)
    assert "FAIL f=3, dilation=2: expected 2 (nn.Conv2d keeps 32x32 with it), got 1" in out
    _, out = run_check(selfcheck.check_same_padding, padding_returns_float, capsys)
    assert "expected 1 (nn.Conv2d keeps 32x32 with it), got 1.0 (a float, not an int)" in out


def test_naive_convnet_sizes_check(capsys):
    assert_pass(*run_check(selfcheck.check_naive_convnet_sizes, [28, 28, 14, 14, 7, 7, 1], capsys))
    assert_fail(*run_check(selfcheck.check_naive_convnet_sizes, [28, 28, 14, 14, 7, 7, 0], capsys))
    assert_fail(*run_check(selfcheck.check_naive_convnet_sizes, [28], capsys))
    assert_fail(*run_check(selfcheck.check_naive_convnet_sizes, None, capsys))


# -------------------------------------------------------------------- pooling
def max_good(x, k, stride=None):
    return windows(x, k, k, k if stride is None else stride).amax(dim=(-2, -1))


def avg_good(x, k, stride=None):
    return windows(x, k, k, k if stride is None else stride).mean(dim=(-2, -1))


def max_stride_one(x, k, stride=None):
    return max_good(x, k, 1)


def max_default_stride_one(x, k, stride=None):
    return max_good(x, k, 1 if stride is None else stride)


def max_takes_min(x, k, stride=None):
    return -max_good(-x, k, stride)


def max_stride_is_kernel(x, k, stride=None):
    return max_good(x, k, k)


def avg_wrong_stride(x, k, stride=None):
    return avg_good(x, k, 1 if stride is None else stride + 1)


def avg_is_max(x, k, stride=None):
    return max_good(x, k, stride)


def avg_sum(x, k, stride=None):
    return avg_good(x, k, stride) * k * k


def test_pool_checks_pass_correct_pooling(capsys):
    assert_pass(*run_check(selfcheck.check_max_pool2d, max_good, capsys))
    assert_pass(*run_check(selfcheck.check_avg_pool2d, avg_good, capsys))


@pytest.mark.parametrize("wrong", [max_stride_one, max_default_stride_one, max_takes_min,
                                   max_stride_is_kernel, avg_good])
def test_max_pool_check_fails_wrong_pooling(wrong, capsys):
    assert_fail(*run_check(selfcheck.check_max_pool2d, wrong, capsys))


@pytest.mark.parametrize("wrong", [avg_wrong_stride, avg_is_max, avg_sum])
def test_avg_pool_check_fails_wrong_pooling(wrong, capsys):
    assert_fail(*run_check(selfcheck.check_avg_pool2d, wrong, capsys))


POOL_TASK = "exercise 3 asks you to compute the pooling yourself"


def lecture_pool2d():
    """Lecture 3's pooling, copied from the notebook: it cuts the windows with unfold."""
    pool2d, = notebook_functions(ROOT / "lectures" / "03_pooling.ipynb", "pool2d")
    return pool2d


def avg_by_conv(x, k, stride=None):
    c = x.shape[1]
    return F.conv2d(x, x.new_full((c, 1, k, k), 1 / k**2), stride=stride or k, groups=c)


def max_by_adaptive_pool(x, k, stride=None):
    return F.adaptive_max_pool2d(x, ((x.shape[2] - k) // (stride or k) + 1,) * 2)


@pytest.mark.parametrize("forbidden, function", [
    (F.max_pool2d, "F.max_pool2d"),
    (torch.max_pool2d, "torch.max_pool2d"),
    (lambda x, k, stride=None: nn.MaxPool2d(k, stride)(x), "nn.MaxPool2d"),
    (max_by_adaptive_pool, "F.adaptive_max_pool2d"),
    (lambda x, k, stride=None: lecture_pool2d()(x, k, stride, "max"), "torch.Tensor.unfold"),
])
def test_max_pool_check_fails_a_pooling_by_pytorch(forbidden, function, capsys):
    result, out = run_check(selfcheck.check_max_pool2d, forbidden, capsys)
    assert_rule_broken(result, out, POOL_TASK, function)


@pytest.mark.parametrize("forbidden, function", [
    (F.avg_pool2d, "F.avg_pool2d"),
    (lambda x, k, stride=None: nn.AvgPool2d(k, stride)(x), "nn.AvgPool2d"),
    (avg_by_conv, "F.conv2d"),
    (lambda x, k, stride=None: lecture_pool2d()(x, k, stride, "avg"), "torch.Tensor.unfold"),
])
def test_avg_pool_check_fails_a_pooling_by_pytorch(forbidden, function, capsys):
    result, out = run_check(selfcheck.check_avg_pool2d, forbidden, capsys)
    assert_rule_broken(result, out, POOL_TASK, function)


def test_lecture_pooling_is_right_outside_the_check():
    """So that the tests above fail for the rule, not for a wrong copy of the lecture."""
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    assert torch.equal(lecture_pool2d()(x, 3, 2, "max"), F.max_pool2d(x, 3, 2))
    assert torch.allclose(lecture_pool2d()(x, 3, 2, "avg"), F.avg_pool2d(x, 3, 2))


def test_pool_checks_pass_the_masters_loops(capsys):
    max_pool2d, avg_pool2d = notebook_functions(SOLUTIONS / "exercise_03_pooling.ipynb",
                                                "max_pool2d", "avg_pool2d")
    assert_pass(*run_check(selfcheck.check_max_pool2d, max_pool2d, capsys))
    assert_pass(*run_check(selfcheck.check_avg_pool2d, avg_pool2d, capsys))


# ------------------------------------------------- exercise 4: global pooling
EXERCISE_4 = SOLUTIONS / "exercise_04_global_pooling_convnet.ipynb"
CHANNELS = (32, 64, 128)


def blocks(in_channels, channels=CHANNELS, relu=(True, True, True), pool=(True, True, True)):
    """The three conv blocks as modules, with the given deviations."""
    layers = []
    for c_out, use_relu, use_pool in zip(channels, relu, pool):
        layers += [nn.Conv2d(in_channels, c_out, 3, padding=1)]
        layers += [nn.ReLU()] if use_relu else []
        layers += [nn.MaxPool2d(2)] if use_pool else []
        in_channels = c_out
    return nn.Sequential(*layers)


class GapModules(nn.Module):
    """Modules in nn.Sequential, nn.AdaptiveAvgPool2d(1), a linear head."""

    def __init__(self, in_channels=3, classes=10):
        super().__init__()
        self.features = blocks(in_channels)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, classes))

    def forward(self, x):
        return self.head(self.features(x))


class GapFunctional(nn.Module):
    """An explicit forward with functions, pooling before the ReLU, a mean and a 1x1-conv head."""

    def __init__(self, in_channels=3, classes=10):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, padding=1) for c_in, c_out
                                   in zip((in_channels,) + CHANNELS[:-1], CHANNELS))
        self.out = nn.Conv2d(CHANNELS[-1], classes, 1)

    def forward(self, x):
        for conv in self.convs:
            x = F.relu(F.max_pool2d(conv(x), kernel_size=2, stride=2))
        return self.out(x.mean(dim=(2, 3), keepdim=True)).flatten(1)


class GapSequential(nn.Sequential):
    """The whole network is one nn.Sequential; the 1x1 convolution comes before the average."""

    def __init__(self, in_channels=3, classes=10):
        super().__init__(blocks(in_channels), nn.Conv2d(CHANNELS[-1], classes, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def gap_variant(features=None, head=None):
    """A GapModules class whose blocks or head are replaced by ``features(in_channels)`` /
    ``head(classes)``."""

    class Variant(GapModules):
        def __init__(self, in_channels=3, classes=10):
            super().__init__(in_channels, classes)
            if features is not None:
                self.features = features(in_channels)
            if head is not None:
                self.head = head(classes)

    return Variant


class GapGlobalMax(GapModules):
    def forward(self, x):
        return self.head[2](self.features(x).amax(dim=(2, 3)))


class GapAvgPoolSizedFor32(GapModules):
    """A 4x4 average pooling: global for 32x32 inputs only."""

    def forward(self, x):
        return self.head[2](F.avg_pool2d(self.features(x), 4).flatten(1))


class GapFixedArguments(GapModules):
    """Ignores its arguments: always 3 input channels and 10 classes."""

    def __init__(self, in_channels=3, classes=10):
        super().__init__()


class GapNotImplemented(nn.Module):
    def __init__(self, in_channels=3, classes=10):
        super().__init__()
        raise NotImplementedError()


class GapForwardNotImplemented(GapModules):
    def forward(self, x):
        raise NotImplementedError()


def notebook_class(notebook: Path, name: str) -> type:
    """The class ``name`` as defined by the code cell of ``notebook`` that defines it."""
    namespace = {"torch": torch, "F": F, "nn": nn}
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code" and f"class {name}(" in cell.source:
            exec(cell.source, namespace)
    return namespace[name]


@pytest.mark.parametrize("net", [GapModules, GapFunctional, GapSequential],
                         ids=lambda c: c.__name__)
def test_gap_check_passes_correct_networks_in_any_style(net, capsys):
    assert_pass(*run_check(selfcheck.check_gap_convnet, net, capsys))


def test_gap_check_passes_the_masters_network(capsys):
    master = notebook_class(EXERCISE_4, "GapConvNet")
    result, out = run_check(selfcheck.check_gap_convnet, master, capsys)
    assert_pass(result, out)
    assert f"expected {selfcheck.gap_parameters(3, 10):,}, got" in out


@pytest.mark.parametrize("wrong, message", [
    (gap_variant(head=lambda k: nn.Sequential(nn.Flatten(), nn.Linear(128 * 4 * 4, k))),
     "FAIL output for 2 images 3x48x48, in_channels=3, classes=10: expected 2x10, your "
     "network raised RuntimeError"),
    (gap_variant(features=lambda c: blocks(c, channels=(32, 64, 64)),
                 head=lambda k: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                              nn.Linear(64, k))),
     "got 32x16x16, 64x8x8, 64x4x4"),
    (gap_variant(features=lambda c: blocks(c, pool=(True, True, False))),
     "expected 32x16x16, 64x8x8, 128x4x4, got 32x16x16, 64x8x8"),
    (gap_variant(features=lambda c: blocks(c, relu=(False, True, True))),
     "the input of convolution 2 has negative values: block 1 needs a ReLU"),
    (gap_variant(features=lambda c: blocks(c, relu=(True, False, True))),
     "the input of convolution 3 has negative values: block 2 needs a ReLU"),
    (gap_variant(features=lambda c: blocks(c, relu=(True, True, False))),
     "FAIL head: the output is one linear map"),
    (GapGlobalMax, "FAIL head: the output is one linear map"),
    (GapAvgPoolSizedFor32, "FAIL head: the output is one linear map"),
    (gap_variant(head=lambda k: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                              nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, k))),
     "FAIL head: the output is one linear map"),
    (GapFixedArguments, "in_channels=1, classes=10: expected 2x10, your network raised"),
    (GapFixedArguments, "in_channels=3, classes=7: expected 2x7, got 2x10"),
])
def test_gap_check_fails_a_wrong_network_and_says_why(wrong, message, capsys):
    result, out = run_check(selfcheck.check_gap_convnet, wrong, capsys)
    assert_fail(result, out)
    assert message in out, out


def test_gap_check_hints_at_global_pooling_and_counts_parameters(capsys):
    flat = gap_variant(head=lambda k: nn.Sequential(nn.Flatten(), nn.Linear(128 * 4 * 4, k)))
    _, out = run_check(selfcheck.check_gap_convnet, flat, capsys)
    assert "(pool globally, so that any image size gives one value per channel)" in out
    assert (f"FAIL parameters with in_channels=3, classes=10: expected "
            f"{selfcheck.gap_parameters(3, 10):,}, got ") in out


@pytest.mark.parametrize("net", [GapNotImplemented, GapForwardNotImplemented])
def test_gap_check_reports_not_implemented(net, capsys):
    result, out = run_check(selfcheck.check_gap_convnet, net, capsys)
    assert_fail(result, out)
    assert "not implemented yet" in out and "NotImplementedError" in out
    assert len(out.splitlines()) == 2, out  # one explanation, one summary


def test_gap_check_leaves_the_random_state_alone(capsys):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    selfcheck.check_gap_convnet(GapModules)
    assert torch.equal(torch.rand(3), expected)


def test_gap_spec_matches_an_independent_network():
    """The spec's formulas against PyTorch: shapes by forward hooks, parameters by counting."""
    for in_channels, classes in [(3, 10), (1, 10), (3, 7)]:
        model = GapModules(in_channels, classes)
        assert selfcheck.gap_parameters(in_channels, classes) == sum(
            p.numel() for p in model.parameters())
    for side in (selfcheck.GAP_SIDE, selfcheck.GAP_HEAD_SIDE, 28):
        pooled = [row.output_shape for row in trace(GapModules(), (3, side, side))
                  if row.kind == "MaxPool2d"]
        assert pooled == selfcheck.gap_pooled_shapes(side)


def test_exercise_4_states_the_spec_that_the_check_uses():
    text = "".join(c.source for c in nbformat.read(EXERCISE_4, 4).cells
                   if c.cell_type == "markdown")
    assert ", ".join(map(str, selfcheck.GAP_CHANNELS)) in text
    for block, shape in enumerate(selfcheck.gap_pooled_shapes(), 1):
        assert f"| block {block} | {' × '.join(map(str, shape))} |" in text
    assert f"| global average pooling | {selfcheck.GAP_CHANNELS[-1]} |" in text
    assert f"{selfcheck.GAP_SIDE} × {selfcheck.GAP_SIDE}" in text
    for in_channels in (3, 1):
        assert f"{selfcheck.gap_parameters(in_channels, 10):,} parameters" in text


def test_training_check_uses_the_exercise_thresholds(capsys):
    thresholds = selfcheck.GAP_MIN_TEST_ACCURACY
    assert thresholds["full"] >= thresholds["cpu"] >= thresholds["ci"] > 0.1
    ci = get_profile("ci")
    assert_fail(*run_check(lambda acc: selfcheck.check_training(acc, ci), thresholds["ci"] - 0.01,
                           capsys))
    result, out = run_check(lambda acc: selfcheck.check_training(acc, get_profile("full")),
                            thresholds["full"] - 0.01, capsys)
    assert result is False
    assert f"expected at least {thresholds['full']:.2f} (profile full), got " in out
    result, out = run_check(lambda acc: selfcheck.check_training(acc, ci), thresholds["ci"], capsys)
    assert result is True and out.startswith("PASS")


def test_exercise_4_states_its_thresholds():
    text = "".join(c.source for c in nbformat.read(EXERCISE_4, 4).cells
                   if c.cell_type == "markdown")
    for value in selfcheck.GAP_MIN_TEST_ACCURACY.values():
        assert f"{value:.2f}" in text, value


def test_lecture_4_states_its_threshold_table():
    lecture = nbformat.read(ROOT / "lectures" / "04_naive_convnet.ipynb", as_version=4)
    code = "".join(c.source for c in lecture.cells if c.cell_type == "code")
    assert "NAIVE_MIN_TEST_ACCURACY[profile.name]" in code
    text = "".join(c.source for c in lecture.cells if c.cell_type == "markdown")
    for value in NAIVE_MIN_TEST_ACCURACY.values():
        assert f"{value:.2f}" in text, value


# ------------------------------------------- unfinished exercises fail politely
@pytest.mark.parametrize("check", [selfcheck.check_conv2d, selfcheck.check_output_size,
                                   selfcheck.check_same_padding, selfcheck.check_max_pool2d,
                                   selfcheck.check_avg_pool2d])
def test_checks_report_not_implemented_without_raising(check, capsys):
    result, out = run_check(check, not_implemented, capsys)
    assert_fail(result, out)
    assert "not implemented yet" in out and "NotImplementedError" in out
    assert len(out.splitlines()) == 2, out  # one explanation, one summary: no wall of FAILs


def test_checks_report_other_exceptions(capsys):
    def broken(*args, **kwargs):
        raise IndexError("too many indices")

    result, out = run_check(selfcheck.check_conv2d, broken, capsys)
    assert_fail(result, out)
    assert "IndexError: too many indices" in out


# ------------------------------------------------------------ student versions
def test_there_are_four_masters_and_four_student_versions():
    assert [p.name for p in MASTERS] == [p.name for p in STUDENTS]
    assert len(MASTERS) >= 4


@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.name)
def test_every_master_has_a_solution_region(master):
    nb = nbformat.read(master, as_version=4)
    assert gen.count_solution_regions(nb) >= 1


def test_committed_student_versions_are_fresh(tmp_path):
    assert gen.main(["--solutions", str(SOLUTIONS), "--exercises", str(tmp_path)]) == 0
    made = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert made == [p.name for p in STUDENTS]
    for name in made:
        assert (tmp_path / name).read_text() == (EXERCISES / name).read_text(), (
            f"exercises/{name} is stale: run `python scripts/generate_exercises.py`")
    assert gen.stale_files(SOLUTIONS, EXERCISES) == []


def test_check_mode_lists_stale_notebooks(tmp_path, capsys):
    gen.write_all(SOLUTIONS, tmp_path)
    assert gen.main(["--check", "--exercises", str(tmp_path)]) == 0
    victim = tmp_path / STUDENTS[0].name
    nb = nbformat.read(victim, as_version=4)
    nb.cells[0].source += "\nhand edit"
    nbformat.write(nb, victim)
    (tmp_path / "exercise_99_orphan.ipynb").write_text("{}")
    capsys.readouterr()
    assert gen.main(["--check", "--exercises", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert STUDENTS[0].name in out and "exercise_99_orphan.ipynb" in out


def _solution_lines(master: Path) -> list[str]:
    """Distinctive lines from the masters' solution regions."""
    lines, inside = [], False
    for cell in nbformat.read(master, as_version=4).cells:
        for line in cell.source.splitlines():
            marker = line.strip()
            if marker == gen.BEGIN_SOLUTION:
                inside = True
            elif marker == gen.END_SOLUTION:
                inside = False
            elif inside and len(marker) > 25:
                lines.append(marker)
    return lines


@pytest.mark.parametrize("student", STUDENTS, ids=lambda p: p.name)
def test_student_versions_have_no_outputs_and_no_solutions(student):
    nb = nbformat.read(student, as_version=4)
    text = student.read_text()
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert "execution" not in cell.metadata
        assert gen.MASTER_ONLY_TAG not in cell.metadata.get("tags", [])
    for marker in (gen.BEGIN_SOLUTION, gen.END_SOLUTION, gen.BEGIN_HIDDEN, gen.END_HIDDEN,
                   "NBVAL_IGNORE_OUTPUT"):
        assert marker not in text
    assert "raise NotImplementedError()" in text
    solution = _solution_lines(SOLUTIONS / student.name)
    assert solution
    for line in solution:
        assert line not in text, f"solution line left in {student.name}: {line}"


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def test_generator_keeps_indentation_and_drops_hidden_and_master_only():
    code = nbformat.v4.new_code_cell(
        "# NBVAL_IGNORE_OUTPUT\ndef f(x):\n    ### BEGIN SOLUTION\n    return x\n"
        "    ### END SOLUTION\n\ny = f(1)\n### BEGIN HIDDEN TESTS\nassert y == 1\n"
        "### END HIDDEN TESTS")
    code.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    code.execution_count = 3
    note = nbformat.v4.new_markdown_cell("produced on a CPU")
    note.metadata["tags"] = [gen.MASTER_ONLY_TAG]
    answer = nbformat.v4.new_markdown_cell("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION")
    master = _notebook(code, note, answer)
    student = gen.student_version(master)
    assert len(student.cells) == 2
    assert student.cells[0].source == (
        "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\ny = f(1)")
    assert student.cells[0].outputs == [] and student.cells[0].execution_count is None
    assert student.cells[1].source == "Why?\nYOUR ANSWER HERE"
    assert master.cells[0].execution_count == 3  # the master is not modified
    assert gen.count_solution_regions(master) == 2


@pytest.mark.parametrize("source", [
    "### BEGIN SOLUTION\nx = 1",
    "x = 1\n### END SOLUTION",
    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION",
    "### BEGIN HIDDEN TESTS\n### END SOLUTION",
])
def test_generator_rejects_unbalanced_markers(source):
    with pytest.raises(gen.MarkupError):
        gen.student_version(_notebook(nbformat.v4.new_code_cell(source)))


def test_unfinished_student_notebooks_fail_politely(tmp_path, monkeypatch):
    """Run every student notebook as handed out: self-checks print FAIL, never raise.

    The only errors allowed are the blanks' own NotImplementedError, raised in the cell
    that calls the unfinished code.
    """
    from nbclient import NotebookClient

    monkeypatch.setenv("CNN_COURSE_PROFILE", "ci")
    for student in STUDENTS:
        nb = nbformat.read(student, as_version=4)
        NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        checks = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            errors = [o for o in cell.outputs if o.output_type == "error"]
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            if "selfcheck.check_" in cell.source and "fit(" not in cell.source:
                checks += 1
                assert not errors, f"{student.name}: a self-check raised {errors[0].ename}"
                assert "FAIL" in text, f"{student.name}: {cell.source!r} printed {text!r}"
            for error in errors:
                assert error.ename == "NotImplementedError", (
                    f"{student.name}: {error.ename}: {error.evalue} in {cell.source!r}")
        assert checks >= 1, student.name


# ------------------------------------------------ nbgrader's Validate on the exercises
def test_a_failing_check_names_itself_on_stderr_only_under_nbgrader(monkeypatch, capsys):
    """nbgrader counts a test cell with stderr output as failed and shows that text."""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert selfcheck.check_conv2d(not_implemented) is False
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    assert selfcheck.check_conv2d(not_implemented) is False
    out, err = capsys.readouterr()
    assert err.startswith("self-check check_conv2d failed:\n"), err
    assert "NotImplementedError" in err and "FAIL: conv2d: 0/6 cases passed" in err
    assert "FAIL" in out  # the notebook's own output is unchanged
    assert selfcheck.check_training(0.0, get_profile("ci")) is False
    assert capsys.readouterr().err.startswith("self-check check_training failed:\n  FAIL")


def test_a_passing_check_writes_nothing_to_stderr_under_nbgrader(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    assert selfcheck.check_training(1.0, get_profile("ci")) is True
    assert selfcheck.check_conv2d(conv_good) is True
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("student", STUDENTS, ids=lambda p: p.name)
def test_self_check_cells_are_nbgrader_test_cells_worth_nothing(student):
    from nbgrader.utils import compute_checksum

    nb = nbformat.read(student, as_version=4)
    tests = [c for c in nb.cells if "nbgrader" in c.metadata]
    calls = [c for c in nb.cells if c.cell_type == "code" and "selfcheck.check_" in c.source]
    assert tests and tests == calls
    for cell in tests:
        meta = cell.metadata.nbgrader
        assert meta["grade"] and meta["locked"] and meta["points"] == 0 and not meta["solution"]
        assert meta["grade_id"].startswith("selfcheck_")
        assert meta["checksum"] == compute_checksum(cell)
    ids = [c.metadata.nbgrader["grade_id"] for c in tests]
    assert len(set(ids)) == len(ids)


def _completed(student: Path) -> nbformat.NotebookNode:
    """The student copy with the master's solutions put back (test cells kept as generated)."""
    master = nbformat.read(SOLUTIONS / student.name, as_version=4)
    nb = nbformat.read(student, as_version=4)
    masters = [c for c in master.cells if gen.MASTER_ONLY_TAG not in c.metadata.get("tags", [])]
    for cell, original in zip(nb.cells, masters):
        if "raise NotImplementedError()" in cell.source and "nbgrader" not in cell.metadata:
            cell.source = "\n".join(
                line for line in original.source.splitlines()
                if line.strip() not in (gen.BEGIN_SOLUTION, gen.END_SOLUTION))
    return nb


def _validate(nb: nbformat.NotebookNode, folder: Path) -> dict:
    """nbgrader's Validator, as the Validate button runs it (students' settings)."""
    import json

    from nbgrader.validator import Validator
    from traitlets.config import Config

    settings = json.loads((ROOT / "lab" / "student" / "nbgrader_config.json").read_text())
    path = folder / "exercise.ipynb"
    nbformat.write(nb, path)
    return Validator(config=Config(settings)).validate(str(path))


def test_validate_fails_an_untouched_exercise_naming_the_check(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_COURSE_PROFILE", "ci")
    result = _validate(nbformat.read(EXERCISES / "exercise_01_conv2d.ipynb", 4), tmp_path)
    failed = result["failed"]
    checks = [f for f in failed if f["source"] == "passed = selfcheck.check_conv2d(conv2d)"]
    assert checks, [f["source"] for f in failed]
    assert "self-check check_conv2d failed" in checks[0]["raw_error"]
    assert "not implemented yet" in checks[0]["raw_error"]
    # every cell is validated (the students' settings): the example that calls the blank
    # is listed too, with its NotImplementedError
    assert any("NotImplementedError" in f["raw_error"] and "conv2d(x, w, b)" in f["source"]
               for f in failed)


def test_validate_passes_a_completed_exercise(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_COURSE_PROFILE", "ci")
    student = EXERCISES / "exercise_01_conv2d.ipynb"
    assert _validate(_completed(student), tmp_path) == {}
