"""Shape tracing, parameter counting and the shared figures."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch
from torch import nn

from cnn_course import History, NaiveConvNet, count_parameters, layer_table, relative_error, trace
from cnn_course.layers import formula_parameters
from cnn_course.plots import (confusion_matrix, plot_confusion_matrix, plot_history, show_images,
                              show_maps)


def test_naive_convnet_shapes_follow_the_lecture():
    shapes = [row.output_shape for row in trace(NaiveConvNet(), (1, 28, 28))
              if row.kind in ("Conv2d", "MaxPool2d", "Flatten", "Linear")]
    assert shapes == [(64, 28, 28), (64, 14, 14), (128, 14, 14), (128, 7, 7), (256, 7, 7),
                      (256, 1, 1), (256,), (128,), (10,)]


def test_naive_convnet_has_403850_parameters_by_count_and_by_formula():
    model = NaiveConvNet()
    rows = trace(model, (1, 28, 28))
    assert count_parameters(model) == 403_850
    assert sum(row.formula for row in rows) == 403_850
    assert all(row.parameters == row.formula for row in rows)
    assert "403,850" in layer_table(model, (1, 28, 28))


def test_formula_handles_groups_and_missing_bias():
    conv = nn.Conv2d(8, 16, (3, 5), groups=2, bias=False)
    assert formula_parameters(conv) == 16 * 4 * 3 * 5 == sum(p.numel() for p in conv.parameters())


def test_shared_parameters_are_counted_once():
    layer = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(layer, layer)) == 20


def test_relative_error():
    x = torch.tensor([1.0, 2.0])
    assert relative_error(x, x) == 0
    assert abs(relative_error(x, x + 0.1) - 0.1 / 4.1) < 1e-6


def test_confusion_matrix_counts():
    m = confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0]), classes=3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_figures_are_drawn():
    history = History([1.0, 0.5], [0.6, 0.8], [0.55, 0.75], [1.0, 1.0], 10)
    assert len(plot_history(history).axes) == 2
    grid = show_images(torch.zeros(10, 28, 28), list(range(10)), [0] * 10, columns=5)
    assert len(grid.axes) == 10 and grid.axes[1].title.get_color() == "red"
    assert len(plot_confusion_matrix(torch.arange(10), torch.arange(10)).axes) == 1
    maps = show_maps(torch.rand(6, 7, 7), columns=4)
    assert len(maps.axes) == 8 and tuple(maps.get_size_inches()) == (5.2, 2.6)
    wide = show_maps(torch.rand(6, 7, 7), columns=6, figsize=(10, 2.2))
    assert tuple(wide.get_size_inches()) == (10, 2.2)
