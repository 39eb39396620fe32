"""The lectures' hand-made filters: shapes, sums, and what they respond to."""
import pytest
import torch
import torch.nn.functional as F

from cnn_course.demo_filters import FILTER_KINDS, edge_kernel, filter_bank


def test_size_three_vertical_is_sobel():
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 4
    assert torch.equal(edge_kernel("vertical", 3), sobel)
    assert torch.equal(edge_kernel("horizontal", 3), sobel.T)


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("kind", FILTER_KINDS)
def test_sums(kind, size):
    kernel = edge_kernel(kind, size)
    assert kernel.shape == (size, size) and kernel.dtype == torch.float32
    if kind == "blur":
        assert kernel.sum().item() == pytest.approx(1.0)
        assert torch.allclose(kernel, torch.full((size, size), 1 / size**2))
    else:
        assert kernel.sum().item() == pytest.approx(0.0, abs=1e-6)
        assert kernel.clamp_min(0).sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("size", [3, 5])
def test_edges_respond_to_their_own_direction_only(size):
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1.0  # dark left half, bright right half: one vertical edge
    weight = filter_bank(("vertical", "horizontal"), size)
    out = F.conv2d(step, weight)
    vertical, horizontal = out[0]
    assert vertical.max().item() == pytest.approx(1.0)
    assert vertical.min().item() == pytest.approx(0.0, abs=1e-6)
    assert horizontal.abs().max().item() == pytest.approx(0.0, abs=1e-6)
    # the horizontal filter finds the same edge after a transpose
    out_t = F.conv2d(step.transpose(-1, -2), weight)
    assert torch.allclose(out_t[0, 1], vertical.T)


def test_diagonals_are_mirror_images():
    assert torch.equal(edge_kernel("antidiagonal", 5), edge_kernel("diagonal", 5).flip(-1))


def test_bank_shape_and_channel_average():
    bank = filter_bank(size=5, in_channels=3)
    assert bank.shape == (len(FILTER_KINDS), 3, 5, 5)
    grey = torch.rand(1, 1, 12, 12)
    colour = grey.expand(1, 3, 12, 12)
    one = F.conv2d(grey, filter_bank(size=5))
    three = F.conv2d(colour, bank)
    assert torch.allclose(one, three, atol=1e-6)


@pytest.mark.parametrize("kind, size", [("sharpen", 3), ("vertical", 4), ("blur", 1)])
def test_bad_arguments(kind, size):
    with pytest.raises(ValueError):
        edge_kernel(kind, size)
    with pytest.raises(ValueError):
        filter_bank(in_channels=0)
