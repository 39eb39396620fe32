"""The convolution's backward pass from scratch, and the gradient checks that judge it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnn_course.gradcheck import conv2d_backward, gradient_check, numerical_gradient, random_indices
from cnn_course.layers import relative_error

# (batch, channels, H, W, filters, Fh, Fw, stride, padding); some strides do not fit exactly.
CASES = [
    (2, 3, 7, 7, 4, 3, 3, 1, 0),
    (2, 3, 8, 8, 4, 3, 3, 2, 0),
    (2, 3, 7, 6, 4, 3, 3, 2, 1),
    (1, 2, 9, 10, 3, 3, 5, 2, 1),
    (2, 1, 7, 7, 2, 2, 2, 3, 0),
    (1, 1, 5, 5, 1, 5, 5, 1, 2),
]


def problem(case, seed=0):
    """Random float64 input, weight, bias, upstream gradient and the convolution's arguments."""
    n, c, h, w, k, fh, fw, stride, padding = case
    torch.manual_seed(seed)
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    weight = torch.randn(k, c, fh, fw, dtype=torch.float64)
    bias = torch.randn(k, dtype=torch.float64)
    grad_out = torch.randn_like(F.conv2d(x, weight, bias, stride, padding))
    return x, weight, bias, grad_out, stride, padding


def losses(x, weight, bias, grad_out, stride, padding):
    """L = sum(conv2d(...) * dY) as a function of each argument: dL/d(argument) is the backward pass."""
    def conv(x_, w_, b_):
        return (F.conv2d(x_, w_, b_, stride, padding) * grad_out).sum()
    return (lambda v: conv(v, weight, bias), lambda v: conv(x, v, bias), lambda v: conv(x, weight, v))


@pytest.mark.parametrize("case", CASES)
def test_conv2d_backward_matches_autograd(case):
    x, weight, bias, grad_out, stride, padding = problem(case)
    leaves = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
    F.conv2d(*leaves, stride, padding).backward(grad_out)
    ours = conv2d_backward(grad_out, x, weight, stride, padding)
    for mine, leaf in zip(ours, leaves):
        assert mine.shape == leaf.shape
        assert relative_error(mine, leaf.grad) < 1e-10


@pytest.mark.parametrize("case", CASES)
def test_numerical_check_passes_the_backward_pass(case):
    x, weight, bias, grad_out, stride, padding = problem(case)
    grads = conv2d_backward(grad_out, x, weight, stride, padding)
    for f, value, grad in zip(losses(x, weight, bias, grad_out, stride, padding), (x, weight, bias), grads):
        assert gradient_check(f, value, grad) < 1e-6


def wrong_backwards(x, weight, grad_out, stride, padding):
    """Typical mistakes, each as (name, which argument, its gradient)."""
    return [
        # flipping an already flipped kernel: dX from the unflipped kernel
        ("unflipped kernel", 0, conv2d_backward(grad_out, x, weight.flip(-2, -1), stride, padding)[0]),
        # conv2d_backward flips what it is given: hand it the transposed kernel flipped, and
        # it uses the transposed kernel where the flipped one belongs
        ("transposed kernel", 0,
         conv2d_backward(grad_out, x, weight.transpose(-2, -1).flip(-2, -1), stride, padding)[0]),
        ("dW of the first image only", 1, conv2d_backward(grad_out[:1], x[:1], weight, stride, padding)[1]),
        ("bias without the sum over the batch", 2, grad_out[0].sum(dim=(1, 2))),
        ("bias averaged instead of summed", 2, grad_out.mean(dim=(0, 2, 3))),
    ]


@pytest.mark.parametrize("case", [CASES[0], CASES[2]])
def test_numerical_check_catches_wrong_gradients(case):
    x, weight, bias, grad_out, stride, padding = problem(case)
    fs = losses(x, weight, bias, grad_out, stride, padding)
    values = (x, weight, bias)
    for name, which, grad in wrong_backwards(x, weight, grad_out, stride, padding):
        assert gradient_check(fs[which], values[which], grad) > 1e-2, name


def test_numerical_gradient_of_a_known_function_and_x_is_left_alone():
    x = torch.linspace(-2, 2, 7, dtype=torch.float64)
    before = x.clone()
    indices = [(i,) for i in range(7)]
    slopes = numerical_gradient(lambda v: (v ** 3).sum(), x, indices)
    assert torch.equal(x, before)
    assert relative_error(slopes, 3 * x ** 2) < 1e-9
    assert relative_error(slopes, 2 * x ** 2) > 0.1  # a wrong derivative is far off


def test_float32_is_too_coarse_for_the_threshold():
    x, weight, bias, grad_out, stride, padding = problem(CASES[0])
    dx = conv2d_backward(grad_out, x, weight, stride, padding)[0]
    f32 = losses(x.float(), weight.float(), bias.float(), grad_out.float(), stride, padding)[0]
    assert gradient_check(f32, x.float(), dx.float()) > 1e-6
    assert gradient_check(f32, x.float(), dx.float(), h=1e-2) < 1e-3  # a larger step helps


def test_gradient_check_rejects_a_gradient_of_the_wrong_shape():
    x = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape"):
        gradient_check(lambda v: v.sum(), x, torch.zeros(4, 3, dtype=torch.float64))


def test_random_indices_are_reproducible_and_in_range():
    first = random_indices((2, 3, 5), 50, seed=1)
    assert first == random_indices((2, 3, 5), 50, seed=1)
    assert first != random_indices((2, 3, 5), 50, seed=2)
    assert all(0 <= a < 2 and 0 <= b < 3 and 0 <= c < 5 for a, b, c in first)
    assert len(set(first)) > 20  # spread over the tensor, not stuck in one place
