"""Class activation maps (Zhou et al., "Learning Deep Features for Discriminative
Localization", CVPR 2016) for a network whose head is global average pooling followed by
one linear layer, such as exercise 4's ``GapConvNet``.

With feature maps ``A_k`` (``K`` maps of ``H x W``) after the last block, the head computes
``score_c = sum_k w_ck * mean(A_k) + b_c``. Because the mean is linear, that is
``mean(M_c) + b_c`` with the class activation map ``M_c = sum_k w_ck * A_k``: ``M_c`` shows
where in the image the evidence for class ``c`` lies, and its mean (plus the bias) *is*
the class score. :func:`score_gap` measures how far a set of maps is from that identity.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_MAX_POOLS = frozenset({torch.nn.functional.max_pool2d, torch.max_pool2d,
                        torch.nn.functional.max_pool2d_with_indices})


def class_activation_maps(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Maps ``[N, C, H, W]``: ``M_c = sum_k weight[c, k] * features[:, k]``.

    ``features``: ``[N, K, H, W]``, the maps the global average pooling averages;
    ``weight``: ``[C, K]``, the linear layer's weight (one row per class).
    """
    if features.dim() != 4 or weight.dim() != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(f"features [N, K, H, W] and weight [C, K] expected, got "
                         f"{tuple(features.shape)} and {tuple(weight.shape)}")
    return torch.einsum("ck,nkhw->nchw", weight, features)


def score_gap(maps: torch.Tensor, logits: torch.Tensor, bias: torch.Tensor | None) -> float:
    """Largest ``|logits[n, c] - (mean of maps[n, c] + bias[c])|``: zero up to rounding
    for the class activation maps of a global-average-pooling-plus-linear head."""
    means = maps.mean(dim=(2, 3))
    if bias is not None:
        means = means + bias
    return (logits - means).abs().max().item()


class _LastPooling(TorchFunctionMode):
    """Keeps the output of the last max pooling of a forward pass (module or function)."""

    def __init__(self) -> None:
        super().__init__()
        self.pooled: torch.Tensor | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _MAX_POOLS:
            self.pooled = out[0] if isinstance(out, tuple) else out
        return out


def linear_head(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight ``[C, K]`` and bias ``[C]`` of ``model``'s last ``nn.Linear`` (or 1x1
    ``nn.Conv2d``, the same map written as a convolution)."""
    heads = [m for m in model.modules()
             if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1))]
    if not heads:
        raise ValueError("no nn.Linear (or 1x1 nn.Conv2d) in the model: no head to read")
    head = heads[-1]
    return head.weight.detach().reshape(head.weight.shape[0], -1), (
        None if head.bias is None else head.bias.detach())


@torch.no_grad()
def gap_network_maps(model: nn.Module, images: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Run ``model`` (a network built as exercise 4 asks) on ``images``.

    Returns ``(maps, logits, bias, features)``: the class activation maps ``[N, C, h, w]``
    of every class, the model's logits ``[N, C]``, the head's bias ``[C]`` and the feature
    maps ``[N, K, h, w]`` the head averages (the ReLU of the last max pooling's output:
    ReLU and max pooling commute, so either order of the two gives these).
    """
    model.eval()
    with _LastPooling() as seen:
        logits = model(images)
    if seen.pooled is None:
        raise ValueError("the model ran no max pooling: cannot find the last block's maps")
    features = seen.pooled.clamp(min=0)
    weight, bias = linear_head(model)
    return class_activation_maps(features, weight), logits, bias, features
