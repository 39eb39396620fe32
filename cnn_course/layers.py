"""Layer-by-layer inspection: output shapes via forward hooks, parameter counts, receptive fields."""
from __future__ import annotations

import copy
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


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of one unit after a layer, in input pixels along one axis."""

    name: str
    kind: str
    size: int  # side of the input square one unit sees (padding included)
    jump: int  # input pixels between two neighbouring units (the product of the strides)
    start: int  # first input row/column seen by unit 0; negative means inside the padding


_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Identity,
              nn.Dropout, nn.modules.batchnorm._BatchNorm, nn.LocalResponseNorm)
_GLOBAL = (nn.Flatten, nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _square(value: int | tuple[int, ...], what: str, name: str) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"layer {name!r}: receptive_fields needs a square {what}, not {value}")
    return value[0]


def receptive_fields(model: nn.Module) -> list[ReceptiveField]:
    """Receptive field after every conv and pooling layer of ``model``, in registration order.

    Walks the leaf modules (which must be registered in the order ``forward`` uses them,
    as in an ``nn.Sequential``) from one input pixel (size 1, jump 1, start 0):
    a layer with kernel k (dilation d: k_eff = d(k - 1) + 1), stride s and padding p gives
    size += (k_eff - 1) * jump, start -= p * jump, jump *= s. Activations, normalisation and
    dropout leave the field as it is; the walk stops at the first Flatten, Linear or
    adaptive pooling, after which a unit sees the whole input. Any other layer is an error.
    """
    size, jump, start = 1, 1, 0
    rows: list[ReceptiveField] = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        if isinstance(module, _GLOBAL):
            break
        if isinstance(module, _POINTWISE):
            continue
        if not isinstance(module, _SPATIAL):
            raise ValueError(f"layer {name!r} ({type(module).__name__}): "
                             "unknown effect on the receptive field")
        kernel = _square(module.kernel_size, "kernel", name)
        dilation = _square(getattr(module, "dilation", 1), "dilation", name)
        stride = _square(module.stride, "stride", name)
        if isinstance(module.padding, str):
            raise ValueError(f"layer {name!r}: give padding as a number, not {module.padding!r}")
        padding = _square(module.padding, "padding", name)
        size += (dilation * (kernel - 1)) * jump
        start -= padding * jump
        jump *= stride
        rows.append(ReceptiveField(name, type(module).__name__, size, jump, start))
    return rows


def unit_input_gradient(model: nn.Module, input_shape: tuple[int, int, int],
                        unit: tuple[int, int, int]) -> torch.Tensor:
    """|d model(x)[0, unit] / dx| summed over channels, ``[H, W]``: where one unit looks.

    Measures the receptive field with autograd on a copy of ``model`` in which nothing can
    hide an input: every weight is set to the positive 1/fan-in and every bias to zero, max
    pooling (whose gradient reaches only each window's largest input) becomes average
    pooling of the same geometry, and the input is all ones, so every ReLU passes.
    The nonzero entries are the unit's receptive field, cut off by the image border.
    """
    probe = _positive_copy(model)
    x = torch.ones(1, *input_shape, requires_grad=True)
    probe(x)[(0, *unit)].backward()
    return x.grad[0].abs().sum(0)


def receptive_field_box(model: nn.Module, input_shape: tuple[int, int, int],
                        unit: tuple[int, int, int]) -> tuple[range, range]:
    """Input rows and columns that ``unit`` depends on, measured by ``unit_input_gradient``."""
    seen = unit_input_gradient(model, input_shape, unit) > 0
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    return range(int(rows[0]), int(rows[-1]) + 1), range(int(cols[0]), int(cols[-1]) + 1)


def _positive_copy(model: nn.Module) -> nn.Module:
    """``model`` with positive weights, zero biases, fresh norm statistics, average pools."""
    probe = copy.deepcopy(model).cpu().float().eval()
    for parent in probe.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                if child.dilation not in (1, (1, 1)):
                    raise ValueError(f"layer {child_name!r}: dilated max pooling is not supported")
                setattr(parent, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                         ceil_mode=child.ceil_mode))
    with torch.no_grad():
        for module in probe.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter):
                weight.fill_(1.0 / weight[0].numel() if weight.dim() > 1 else 1.0)
            bias = getattr(module, "bias", None)
            if isinstance(bias, nn.Parameter):
                bias.zero_()
    return probe
