"""Gradient checking, CS231n style, and the backward pass of a convolution from scratch.

``conv2d_backward`` computes the three gradients of ``F.conv2d`` without autograd;
``conv_transpose2d_scratch`` computes its input gradient the other way round, as the
transposed convolution ``F.conv_transpose2d`` does (every value stamps a scaled copy of
the filter); ``numerical_gradient`` and ``gradient_check`` compare any gradient with centred
differences. Run checks in float64: in float32 the rounding error of a difference
quotient alone is far above the 1e-6 that a correct gradient reaches in float64.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .layers import relative_error

Index = tuple[int, ...]


def conv2d_backward(
    grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients ``(dx, dweight, dbias)`` of ``F.conv2d(x, weight, bias, stride, padding)``.

    ``grad_out`` is the upstream gradient dL/dY, shaped like the convolution's output
    ``[N, K, H_out, W_out]``; ``x`` is ``[N, C, H, W]`` and ``weight`` ``[K, C, Fh, Fw]``.
    With Y[i, j] = sum_uv Xp[i*S + u, j*S + v] * W[u, v] + b (Xp: the padded input):

    * dbias: every output position adds the bias once, so dbias sums dY over all positions;
    * stride: dY is first spread back onto the stride-1 grid, zeros in between, so the
      formulas below only need the stride-1 case;
    * dweight[u, v] = sum_ij dY[i, j] * Xp[i + u, j + v]: a correlation of Xp with dY;
    * dXp[p, q] = sum_ij dY[i, j] * W[p - i, q - j]: a "full" correlation of dY, padded by
      F - 1 on each side, with the kernel flipped (and its in/out channels swapped);
      the padding's share is cut off, rows/columns that no window reached stay zero.
    """
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    dbias = grad_out.sum(dim=(0, 2, 3))
    if stride > 1:
        spread = grad_out.new_zeros(*grad_out.shape[:2], (grad_out.shape[2] - 1) * stride + 1,
                                    (grad_out.shape[3] - 1) * stride + 1)
        spread[:, :, ::stride, ::stride] = grad_out
        grad_out = spread
    x_padded = F.pad(x, (padding,) * 4)
    covered_h, covered_w = grad_out.shape[2] + kh - 1, grad_out.shape[3] + kw - 1
    x_covered = x_padded[:, :, :covered_h, :covered_w]
    # Batch and channel axes swap roles so that conv2d sums over the batch: [C, N, ...] * [K, N, ...].
    dweight = F.conv2d(x_covered.transpose(0, 1), grad_out.transpose(0, 1)).transpose(0, 1)
    dx_covered = F.conv2d(F.pad(grad_out, (kw - 1, kw - 1, kh - 1, kh - 1)),
                          weight.flip(-2, -1).transpose(0, 1))
    dx_padded = F.pad(dx_covered, (0, x_padded.shape[3] - covered_w, 0, x_padded.shape[2] - covered_h))
    dx = dx_padded[:, :, padding:padding + h, padding:padding + w]
    return dx, dweight, dbias


def conv_transpose2d_scratch(
    y: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0, output_padding: int = 0,
) -> torch.Tensor:
    """``F.conv_transpose2d(y, weight, None, stride, padding, output_padding)`` by stamping.

    ``y`` is ``[N, K, H, W]``, ``weight`` ``[K, C, Fh, Fw]`` (laid out as for ``F.conv2d``
    from C to K channels). Every value ``y[n, k, i, j]`` adds the filter ``weight[k]``,
    scaled by it, onto a canvas at rows ``i*S .. i*S + Fh - 1`` and columns
    ``j*S .. j*S + Fw - 1``; overlapping copies add up. The canvas is the padded input of
    the convolution, so ``padding`` rows/columns are cut off each side at the end.
    ``output_padding`` adds rows/columns at the bottom/right of the canvas first, so the
    output is ``(H - 1)*S - 2P + Fh + output_padding`` high: a stride maps several input
    sizes to one output size, and this picks which. With ``y = dY`` the result is the input
    gradient ``dX`` of the convolution, and no flipped filter appears anywhere.
    """
    n, k, h, w = y.shape
    k_w, c, fh, fw = weight.shape
    if k != k_w:
        raise ValueError(f"y has {k} channels, the filters expect {k_w}")
    if not 0 <= output_padding < stride:
        raise ValueError(f"output_padding must lie in [0, stride), got {output_padding} with stride {stride}")
    canvas = y.new_zeros(n, c, (h - 1) * stride + fh + output_padding, (w - 1) * stride + fw + output_padding)
    for u in range(fh):
        for v in range(fw):
            # filter tap (u, v) of every stamp lands on rows u, u + S, ..., columns v, v + S, ...
            canvas[:, :, u:u + (h - 1) * stride + 1:stride, v:v + (w - 1) * stride + 1:stride] += \
                torch.einsum("nkij,kc->ncij", y, weight[:, :, u, v])
    return canvas[:, :, padding:canvas.shape[2] - padding, padding:canvas.shape[3] - padding]


def random_indices(shape: Sequence[int], count: int, seed: int = 0) -> list[Index]:
    """``count`` random positions in a tensor of ``shape`` (with repeats), reproducible by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    flat = torch.randint(0, int(torch.Size(shape).numel()), (count,), generator=generator)
    return [tuple(int(i) for i in torch.unravel_index(k, tuple(shape))) for k in flat]


def numerical_gradient(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, indices: Sequence[Index],
    h: float = 1e-6,
) -> torch.Tensor:
    """Centred differences (f(x + h e) - f(x - h e)) / 2h of the scalar ``f`` at ``indices`` of ``x``.

    ``x`` itself is not changed; the result is one derivative per index, in ``x``'s dtype.
    """
    x = x.detach()
    slopes = []
    for index in indices:
        plus, minus = x.clone(), x.clone()
        plus[index] += h
        minus[index] -= h
        with torch.no_grad():
            slopes.append((f(plus) - f(minus)) / (2 * h))
    return torch.stack(slopes).to(x.dtype)


def gradient_check(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, analytic: torch.Tensor,
    count: int = 10, seed: int = 0, h: float = 1e-6,
) -> float:
    """Relative error of ``analytic`` (df/dx, shaped like ``x``) against centred differences.

    Compares ``count`` random entries (``random_indices``) with ``layers.relative_error``;
    in float64 a correct gradient gives well below 1e-6, a wrong one orders of magnitude more.
    """
    if analytic.shape != x.shape:
        raise ValueError(f"the gradient has shape {tuple(analytic.shape)}, x has {tuple(x.shape)}")
    indices = random_indices(x.shape, count, seed)
    numeric = numerical_gradient(f, x, indices, h)
    return relative_error(torch.stack([analytic[i] for i in indices]), numeric)
