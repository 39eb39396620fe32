"""Layer-by-layer inspection: output shapes via forward hooks, parameter counts."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerRow:
    """One leaf module seen during a forward pass."""

    name: str
    kind: str
    output_shape: tuple[int, ...]  # without the batch dimension
    parameters: int  # counted from the module's own tensors
    formula: int | None  # the textbook formula, where one applies


def formula_parameters(module: nn.Module) -> int | None:
    """Parameters by formula: Conv2d C2*(C1/groups*Fh*Fw) (+C2), Linear out*in (+out)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        weights = module.out_channels * (module.in_channels // module.groups) * kh * kw
        return weights + (module.out_channels if module.bias is not None else 0)
    if isinstance(module, nn.Linear):
        weights = module.out_features * module.in_features
        return weights + (module.out_features if module.bias is not None else 0)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return 2 * module.num_features if module.affine else 0
    if not any(True for _ in module.parameters(recurse=False)):
        return 0
    return None


def count_parameters(model: nn.Module) -> int:
    """Distinct parameter tensors in the model's state_dict, element by element."""
    seen: set[int] = set()
    total = 0
    for value in model.state_dict(keep_vars=True).values():
        if isinstance(value, nn.Parameter) and id(value) not in seen:
            seen.add(id(value))
            total += value.numel()
    return total


def trace(model: nn.Module, input_shape: tuple[int, ...], device: str = "cpu") -> list[LayerRow]:
    """Run one zero image of ``input_shape`` (C, H, W) through ``model`` and record every leaf."""
    rows: list[LayerRow] = []
    hooks = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue

        def record(mod: nn.Module, _inputs, output, name: str = name) -> None:
            own = sum(p.numel() for p in mod.parameters(recurse=False))
            rows.append(LayerRow(name, type(mod).__name__, tuple(output.shape[1:]), own,
                                 formula_parameters(mod)))

        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return rows


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """A printable table: layer, output shape, parameters, and the formula's count."""
    rows = trace(model, input_shape)
    lines = [f"{'layer':<22}{'type':<18}{'output shape':<20}{'parameters':>14}{'formula':>14}",
             f"{'input':<22}{'':<18}{_shape(input_shape):<20}"]
    for row in rows:
        formula = "" if row.formula is None else f"{row.formula:,}"
        lines.append(f"{row.name:<22}{row.kind:<18}{_shape(row.output_shape):<20}"
                     f"{row.parameters:>14,}{formula:>14}")
    lines.append(f"{'total':<60}{count_parameters(model):>14,}")
    return "\n".join(lines)


def print_layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Print ``layer_table``."""
    print(layer_table(model, input_shape))


def relative_error(x: torch.Tensor, y: torch.Tensor) -> float:
    """max |x - y| / max(|x| + |y|), the CS231n-style check of an implementation."""
    x, y = x.detach().double(), y.detach().double()
    return ((x - y).abs().max() / (x.abs() + y.abs()).max().clamp_min(1e-12)).item()
