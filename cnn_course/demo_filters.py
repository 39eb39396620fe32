"""Hand-made filters for the lectures: edge, blur and spot detectors of any odd size.

A trained network learns its filters; these are written down by hand so that a
lecture can show what a single filter does to an image before any training.
All of them are meant for ``torch.nn.functional.conv2d``, which computes a
cross-correlation (the filter is not flipped), so "vertical" responds with a
positive value where the image gets brighter from left to right.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

FILTER_KINDS: tuple[str, ...] = (
    "vertical", "horizontal", "diagonal", "antidiagonal", "blur", "spot",
)


def _binomial(size: int) -> torch.Tensor:
    """Row ``size - 1`` of Pascal's triangle: a smoothing profile (1 2 1, 1 4 6 4 1, ...)."""
    row = torch.ones(1, dtype=torch.float64)
    for _ in range(size - 1):
        row = torch.cat([row, torch.zeros(1, dtype=torch.float64)])
        row = row + row.roll(1)
    return row


def edge_kernel(kind: str, size: int = 3) -> torch.Tensor:
    """One ``size x size`` float32 kernel of the given ``kind`` (see ``FILTER_KINDS``).

    * ``vertical``: smoothing down the rows times an odd ramp across the columns
      (for ``size=3`` exactly the Sobel kernel, scaled); it finds vertical edges.
    * ``horizontal``: its transpose; it finds horizontal edges.
    * ``diagonal`` / ``antidiagonal``: the ramp runs along ``j - i`` / ``-(i + j)``.
    * ``blur``: the box average, entries ``1 / size**2``.
    * ``spot``: centre minus the mean of its surround (bright dots, corners).

    Edge and spot kernels sum to zero (no response on a flat area) and their positive
    entries sum to one, so a unit step edge across the whole window gives 1.
    """
    if kind not in FILTER_KINDS:
        raise ValueError(f"unknown filter kind {kind!r}; known kinds: {', '.join(FILTER_KINDS)}")
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd number >= 3, not {size}")
    half = size // 2
    offsets = torch.arange(-half, half + 1, dtype=torch.float64)
    if kind in ("vertical", "horizontal"):
        kernel = torch.outer(_binomial(size), offsets.sign() * _binomial(size))
        if kind == "horizontal":
            kernel = kernel.T
    elif kind in ("diagonal", "antidiagonal"):
        rows, cols = torch.meshgrid(offsets, offsets, indexing="ij")
        kernel = cols - rows if kind == "diagonal" else -(rows + cols)
    elif kind == "blur":
        kernel = torch.ones(size, size, dtype=torch.float64)
    else:  # spot
        kernel = torch.full((size, size), -1.0 / (size * size - 1), dtype=torch.float64)
        kernel[half, half] = 1.0
    if kind == "blur":
        kernel = kernel / kernel.sum()
    else:
        kernel = kernel / kernel.clamp_min(0).sum()
    return kernel.float().contiguous()


def filter_bank(
    kinds: Sequence[str] = FILTER_KINDS, size: int = 3, in_channels: int = 1,
) -> torch.Tensor:
    """Stack kernels into a conv weight ``[len(kinds), in_channels, size, size]``.

    Each kernel is shared by all input channels and divided by ``in_channels``, so on a
    colour image it acts on the mean of the channels (the brightness).
    """
    if in_channels < 1:
        raise ValueError(f"in_channels must be positive, not {in_channels}")
    kernels = torch.stack([edge_kernel(kind, size) for kind in kinds])
    return (kernels[:, None] / in_channels).expand(-1, in_channels, -1, -1).contiguous()
