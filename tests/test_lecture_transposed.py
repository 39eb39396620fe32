"""Lecture 5's transposed convolution: the convolution's input gradient, run as a layer.

``conv_transpose2d_scratch`` (stamping a scaled copy of the filter per value) must equal
``F.conv_transpose2d``, autograd's dX and ``conv2d_backward``'s dX; the checks the lecture
uses must catch planted bugs (a flipped stamp, a forgotten output_padding or stride).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnn_course.gradcheck import conv2d_backward, conv_transpose2d_scratch, gradient_check
from cnn_course.layers import relative_error

# (batch, channels, H, W, filters, F, stride, padding): square inputs (one output_padding for both
# axes), strides 1, 2 and 3, fitting or not.
CASES = [
    (2, 3, 7, 7, 4, 3, 1, 0),
    (2, 3, 7, 7, 4, 3, 1, 1),
    (2, 3, 7, 7, 4, 3, 2, 1),   # (7 + 2 - 3) / 2 whole: output_padding 0
    (2, 3, 8, 8, 4, 3, 2, 1),   # not whole: output_padding 1
    (1, 2, 9, 9, 3, 4, 2, 1),    # F = 4: (9 + 2 - 4) / 2 not whole
    (2, 1, 10, 10, 2, 5, 3, 2),
]


def problem(case, seed=0):
    """Input, weight, upstream gradient, stride, padding and the output_padding that restores H x W."""
    n, c, h, w, k, f, stride, padding = case
    torch.manual_seed(seed)
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    weight = torch.randn(k, c, f, f, dtype=torch.float64)
    grad_out = torch.randn_like(F.conv2d(x, weight, None, stride, padding))
    output_padding = (h + 2 * padding - f) % stride
    return x, weight, grad_out, stride, padding, output_padding


def loss_of_x(weight, grad_out, stride, padding):
    return lambda v: (F.conv2d(v, weight, None, stride, padding) * grad_out).sum()


@pytest.mark.parametrize("case", CASES)
def test_transposed_convolution_is_the_input_gradient(case):
    x, weight, grad_out, stride, padding, output_padding = problem(case)
    leaf = x.clone().requires_grad_(True)
    F.conv2d(leaf, weight, None, stride, padding).backward(grad_out)
    by_torch = F.conv_transpose2d(grad_out, weight, None, stride, padding, output_padding)
    by_stamping = conv_transpose2d_scratch(grad_out, weight, stride, padding, output_padding)
    by_gather = conv2d_backward(grad_out, x, weight, stride, padding)[0]
    for result in (by_torch, by_stamping, by_gather):
        assert result.shape == x.shape
        assert relative_error(result, leaf.grad) < 1e-12
    assert gradient_check(loss_of_x(weight, grad_out, stride, padding), x, by_stamping, count=20) < 1e-6


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("output_padding", [0, 1, 2])
def test_scratch_matches_pytorch_on_rectangles(stride, output_padding):
    if output_padding >= stride:
        with pytest.raises(ValueError, match="output_padding"):
            conv_transpose2d_scratch(torch.zeros(1, 2, 3, 3), torch.zeros(2, 1, 3, 3), stride, 0, output_padding)
        return
    torch.manual_seed(stride)
    y = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 2, dtype=torch.float64)
    ours = conv_transpose2d_scratch(y, weight, stride, 1, output_padding)
    reference = F.conv_transpose2d(y, weight, None, stride, 1, output_padding)
    assert ours.shape == reference.shape
    assert relative_error(ours, reference) < 1e-12


def test_channel_mismatch_is_refused():
    with pytest.raises(ValueError, match="channels"):
        conv_transpose2d_scratch(torch.zeros(1, 3, 4, 4), torch.zeros(2, 1, 3, 3))


@pytest.mark.parametrize("case", [CASES[2], CASES[3], CASES[5]])
def test_the_check_catches_a_flipped_stamp(case):
    # The flip belongs to the gather form (a sliding window over dY); stamping the flipped filter is a bug.
    x, weight, grad_out, stride, padding, output_padding = problem(case)
    wrong = conv_transpose2d_scratch(grad_out, weight.flip(-2, -1), stride, padding, output_padding)
    assert wrong.shape == x.shape
    assert gradient_check(loss_of_x(weight, grad_out, stride, padding), x, wrong, count=20) > 1e-2
    assert relative_error(wrong, F.conv_transpose2d(grad_out, weight, None, stride, padding, output_padding)) > 1e-2


def test_the_check_catches_a_forgotten_output_padding_or_stride():
    x, weight, grad_out, stride, padding, output_padding = problem(CASES[3])  # 8 x 8, stride 2: padding 1 needed
    assert output_padding == 1
    f = loss_of_x(weight, grad_out, stride, padding)
    no_output_padding = F.conv_transpose2d(grad_out, weight, None, stride, padding)  # 7 x 7, one row short
    no_stride = conv_transpose2d_scratch(grad_out, weight, 1, padding)
    for wrong in (no_output_padding, no_stride):
        assert wrong.shape != x.shape
        with pytest.raises(ValueError, match="shape"):
            gradient_check(f, x, wrong)


def test_the_check_catches_an_unflipped_gather():
    x, weight, grad_out, stride, padding, output_padding = problem(CASES[2])
    unflipped = conv2d_backward(grad_out, x, weight.flip(-2, -1), stride, padding)[0]  # flipped twice
    assert relative_error(unflipped, F.conv_transpose2d(grad_out, weight, None, stride, padding)) > 1e-2
    assert gradient_check(loss_of_x(weight, grad_out, stride, padding), x, unflipped, count=20) > 1e-2


def test_transposed_convolution_matrix_is_the_transpose():
    # Both are linear maps; build their matrices column by column from basis images.
    torch.manual_seed(0)
    weight = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    basis_in = torch.eye(25, dtype=torch.float64).reshape(25, 1, 5, 5)
    conv_matrix = F.conv2d(basis_in, weight, None, 2, 1).reshape(25, 9).T  # [9 outputs, 25 inputs]
    basis_out = torch.eye(9, dtype=torch.float64).reshape(9, 1, 3, 3)
    transposed_matrix = conv_transpose2d_scratch(basis_out, weight, 2, 1).reshape(9, 25).T  # [25, 9]
    assert torch.allclose(transposed_matrix, conv_matrix.T, rtol=0, atol=1e-15)


def test_conv_transpose_layer_upsamples_and_a_ones_kernel_repeats_pixels():
    up = nn.ConvTranspose2d(256, 128, kernel_size=2, stride=2)
    overlapping = nn.ConvTranspose2d(256, 128, kernel_size=4, stride=2, padding=1)
    maps = torch.randn(3, 256, 7, 7)
    with torch.no_grad():
        assert up(maps).shape == overlapping(maps).shape == (3, 128, 14, 14)
        assert nn.Conv2d(128, 256, 4, 2, 1)(overlapping(maps)).shape == maps.shape  # and back down
    image = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    nearest = F.conv_transpose2d(image, torch.ones(1, 1, 2, 2), stride=2)
    assert torch.equal(nearest, F.interpolate(image, scale_factor=2, mode="nearest"))
