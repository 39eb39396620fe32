"""What the assignment asks for: the expected layers, pooling stages and parameter counts.

Derived from the papers' tables (AlexNet with one tower; VGG configuration D), not from
the reference code, so the checks and the master notebook are two independent sources.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    """One Conv2d or Linear layer of the expected network (``in_`` -1: the input channels)."""

    name: str
    kind: str  # "Conv2d" or "Linear"
    in_: int  # input channels / features; -1 = the model's in_channels
    out: int  # output channels / features; -1 = the model's num_classes
    kernel: int = 0
    stride: int = 1
    padding: int = 0

    def resolve(self, in_channels: int, num_classes: int) -> "Layer":
        """The layer for a concrete (in_channels, num_classes) configuration."""
        return Layer(self.name, self.kind, in_channels if self.in_ == -1 else self.in_,
                     num_classes if self.out == -1 else self.out,
                     self.kernel, self.stride, self.padding)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.kind == "Conv2d":
            return (self.out, self.in_, self.kernel, self.kernel)
        return (self.out, self.in_)

    @property
    def weights(self) -> int:
        """C2 x (C1 x Fh x Fw) for a convolution, out x in for a linear layer."""
        if self.kind == "Conv2d":
            return self.out * self.in_ * self.kernel * self.kernel
        return self.out * self.in_

    @property
    def parameters(self) -> int:
        return self.weights + self.out

    def describe(self) -> str:
        """How the layer is written in PyTorch."""
        if self.kind == "Conv2d":
            extra = "".join([f", stride={self.stride}" if self.stride != 1 else "",
                             f", padding={self.padding}" if self.padding else ""])
            return f"nn.Conv2d({self.in_}, {self.out}, kernel_size={self.kernel}{extra})"
        return f"nn.Linear({self.in_}, {self.out})"

    def formula(self) -> str:
        """The counting formula with numbers filled in."""
        if self.kind == "Conv2d":
            return (f"{self.out} x ({self.in_} x {self.kernel} x {self.kernel}) = "
                    f"{self.weights:,} weights + {self.out} biases")
        return f"{self.out} x {self.in_} = {self.weights:,} weights + {self.out} biases"


@dataclass(frozen=True)
class ModelSpec:
    """Everything the checks expect of one model class."""

    key: str  # "alexnet" or "vgg16"
    class_name: str
    layers: tuple[Layer, ...]
    full_size: int  # the paper's input side length
    pool_shapes: tuple[tuple[int, int, int], ...]  # after every nn.MaxPool2d at full_size
    pool_hints: tuple[str, ...]  # where to look when that stage has the wrong shape
    totals: dict[tuple[int, int], int]  # (in_channels, num_classes) -> parameters

    def resolved(self, in_channels: int, num_classes: int) -> list[Layer]:
        return [layer.resolve(in_channels, num_classes) for layer in self.layers]

    def total(self, in_channels: int, num_classes: int) -> int:
        return sum(layer.parameters for layer in self.resolved(in_channels, num_classes))


_ALEXNET = (
    Layer("conv1", "Conv2d", -1, 96, 11, stride=4),
    Layer("conv2", "Conv2d", 96, 256, 5, padding=2),
    Layer("conv3", "Conv2d", 256, 384, 3, padding=1),
    Layer("conv4", "Conv2d", 384, 384, 3, padding=1),
    Layer("conv5", "Conv2d", 384, 256, 3, padding=1),
    Layer("fc1", "Linear", 256 * 6 * 6, 4096),
    Layer("fc2", "Linear", 4096, 4096),
    Layer("fc3", "Linear", 4096, -1),
)


def _vgg16_layers() -> tuple[Layer, ...]:
    layers, channels = [], -1
    for block, (width, count) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for index in range(1, count + 1):
            layers.append(Layer(f"conv{block}_{index}", "Conv2d", channels, width, 3, padding=1))
            channels = width
    layers += [Layer("fc1", "Linear", 512 * 7 * 7, 4096), Layer("fc2", "Linear", 4096, 4096),
               Layer("fc3", "Linear", 4096, -1)]
    return tuple(layers)


ALEXNET = ModelSpec(
    key="alexnet",
    class_name="AlexNet",
    layers=_ALEXNET,
    full_size=227,
    pool_shapes=((96, 27, 27), (256, 13, 13), (256, 6, 6)),
    pool_hints=(
        "conv1 (96 filters of 11x11, stride 4, no padding: 227 -> 55) and the first "
        "overlapping max-pool (3x3, stride 2: 55 -> 27)",
        "conv2 (256 filters of 5x5, padding 2 keeps 27x27) and the second max-pool (3x3, stride 2)",
        "conv3-conv5 (3x3, padding 1 keep 13x13; conv5 has 256 filters) and the third "
        "max-pool (3x3, stride 2)",
    ),
    totals={(3, 1000): 62_378_344, (1, 10): 58_299_082},
)

VGG16 = ModelSpec(
    key="vgg16",
    class_name="VGG16",
    layers=_vgg16_layers(),
    full_size=224,
    pool_shapes=((64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)),
    pool_hints=tuple(
        f"block {b} ({n} convolutions 3x3 with stride 1 and padding 1, {w} filters) and its "
        f"2x2 max-pool with stride 2"
        for b, (w, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1)
    ),
    totals={(3, 1000): 138_357_544, (1, 10): 134_300_362},
)

SPECS = {"alexnet": ALEXNET, "vgg16": VGG16}


def get_spec(model: str) -> ModelSpec:
    """The spec of ``model`` ("alexnet" or "vgg16", case-insensitive)."""
    try:
        return SPECS[model.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(SPECS)}") from None


for _spec in SPECS.values():  # the tables above must add up to the documented totals
    for (_c, _k), _total in _spec.totals.items():
        assert _spec.total(_c, _k) == _total, (_spec.key, _c, _k, _spec.total(_c, _k))
