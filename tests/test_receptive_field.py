"""Receptive fields: the formula of ``receptive_fields`` against autograd's measurement."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnn_course import NaiveConvNet
from cnn_course.layers import ReceptiveField, receptive_field_box, receptive_fields, unit_input_gradient


def seen_rows(model: nn.Module, input_shape: tuple[int, int, int],
              unit: tuple[int, int, int]) -> tuple[int, int]:
    """First and last input row with a nonzero gradient of ``unit`` (measured with autograd)."""
    rows, cols = receptive_field_box(model, input_shape, unit)
    assert rows == cols  # callers ask for units on the diagonal of square inputs
    return rows[0], rows[-1]


def predicted_rows(field: ReceptiveField, i: int) -> tuple[int, int]:
    first = field.start + i * field.jump
    return first, first + field.size - 1


def wrong_without_jump(model: nn.Module) -> list[ReceptiveField]:
    """A common mistake: every layer adds k - 1, as if there were no strides before it."""
    fields, size = [], 1
    for field in receptive_fields(model):
        module = dict(model.named_modules())[field.name]
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        size += k - 1
        fields.append(ReceptiveField(field.name, field.kind, size, field.jump, field.start))
    return fields


def wrong_jump_after(model: nn.Module) -> list[ReceptiveField]:
    """Another mistake: multiplying the jump by the layer's own stride before adding its kernel."""
    fields, size, jump = [], 1, 1
    for field in receptive_fields(model):
        module = dict(model.named_modules())[field.name]
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        s = module.stride if isinstance(module.stride, int) else module.stride[0]
        jump *= s
        size += (k - 1) * jump
        fields.append(ReceptiveField(field.name, field.kind, size, jump, field.start))
    return fields


STACKS = {
    "three 3x3 convs": nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)]),
    "conv, pool, conv, pool, conv": nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 1, 3)),
    "strided 5x5 and a dilated 3x3": nn.Sequential(
        nn.Conv2d(1, 2, 5, stride=2, padding=2), nn.BatchNorm2d(2), nn.Conv2d(2, 1, 3, dilation=2)),
    "naive ConvNet up to its third conv": NaiveConvNet().convlayers[:8],
}


def agrees_with_autograd(fields: list[ReceptiveField], model: nn.Module, side: int = 40) -> bool:
    """Whether the last field predicts the rows seen by units of the last layer, where they fit."""
    out = model(torch.zeros(1, 1, side, side)).shape
    field = fields[-1]
    units = [i for i in range(out[-2]) if 0 <= predicted_rows(field, i)[0]
             and predicted_rows(field, i)[1] < side]
    assert units, "no unit's receptive field fits inside the input: make the input larger"
    checked = sorted({units[0], units[len(units) // 2], units[-1]})  # first, middle, last
    return all(seen_rows(model, (1, side, side), (0, i, i)) == predicted_rows(field, i) for i in checked)


@pytest.mark.parametrize("name", STACKS)
def test_formula_agrees_with_autograd(name):
    model = STACKS[name]
    assert agrees_with_autograd(receptive_fields(model), model)


@pytest.mark.parametrize("name", ["conv, pool, conv, pool, conv", "naive ConvNet up to its third conv"])
@pytest.mark.parametrize("wrong", [wrong_without_jump, wrong_jump_after])
def test_wrong_formulas_disagree_with_autograd(name, wrong):
    model = STACKS[name]
    assert not agrees_with_autograd(wrong(model), model)


def test_naive_convnet_fields():
    fields = receptive_fields(NaiveConvNet())
    assert [(f.kind, f.size, f.jump, f.start) for f in fields] == [
        ("Conv2d", 3, 1, -1), ("MaxPool2d", 4, 2, -1), ("Conv2d", 8, 2, -3),
        ("MaxPool2d", 10, 4, -3), ("Conv2d", 18, 4, -7), ("MaxPool2d", 42, 4, -7)]
    # the classifier's input sees the whole 28 x 28 image
    grad = unit_input_gradient(NaiveConvNet().convlayers, (1, 28, 28), (0, 0, 0))
    assert bool((grad > 0).all())


def test_the_walk_stops_where_a_unit_sees_everything():
    head = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 10, 1))
    assert [f.name for f in receptive_fields(head)] == ["0"]  # no row for the 1x1 conv after the global pool
    assert [f.name for f in receptive_fields(NaiveConvNet())][-1] == "convlayers.8"


def test_stacked_3x3_convs_grow_by_two():
    for depth in range(1, 6):
        model = nn.Sequential(*[nn.Conv2d(1, 1, 3) for _ in range(depth)])
        assert receptive_fields(model)[-1].size == 2 * depth + 1


def test_measurement_is_not_fooled_by_max_pooling_or_negative_weights():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.MaxPool2d(2))
    with torch.no_grad():
        model[0].weight.fill_(-1.0)  # a ReLU would block every gradient of the original model
    grad = unit_input_gradient(model, (1, 8, 8), (0, 1, 1))
    assert int((grad > 0).sum()) == 16  # the full 4 x 4 field, not one window's winner
    assert receptive_field_box(model, (1, 8, 8), (0, 1, 1)) == (range(2, 6), range(2, 6))
    assert model[0].weight.eq(-1).all() and isinstance(model[2], nn.MaxPool2d)  # original untouched


def test_unsupported_layers_are_refused():
    with pytest.raises(ValueError, match="square kernel"):
        receptive_fields(nn.Sequential(nn.Conv2d(1, 1, (3, 5))))
    with pytest.raises(ValueError, match="padding as a number"):
        receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3, padding="same")))
    with pytest.raises(ValueError, match="unknown effect"):
        receptive_fields(nn.Sequential(nn.Upsample(scale_factor=2)))
