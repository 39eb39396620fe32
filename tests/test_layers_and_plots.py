"""Shape tracing, parameter counting and the shared figures."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
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


def _images(figure):
    """The imshow images of a figure, panel by panel."""
    return [image for ax in figure.axes for image in ax.get_images()]


def test_show_maps_unsigned_gives_every_panel_its_own_viridis_range_and_no_colour_bar():
    maps = torch.stack([torch.linspace(-1, 3, 25).reshape(5, 5), torch.linspace(0, 0.5, 25).reshape(5, 5)])
    figure = show_maps(maps, columns=2)
    images = _images(figure)
    assert len(figure.axes) == 2 and len(images) == 2
    assert [image.get_clim() for image in images] == [(-1, 3), (0, 0.5)]
    assert all(image.get_cmap().name == "viridis" and image.colorbar is None for image in images)


def test_show_maps_signed_shares_one_symmetric_diverging_scale_with_a_colour_bar():
    # panel 0 spans [-1, 3], panel 1 only positive values: a per-panel or min/max scale fails
    maps = torch.stack([torch.linspace(-1, 3, 25).reshape(5, 5), torch.linspace(0, 0.5, 25).reshape(5, 5)])
    figure = show_maps(maps, columns=4, signed=True)
    panels = _images(figure)
    assert len(panels) == 2 and len(figure.axes) == 4 + 1  # four panel slots and the colour bar
    assert all(image.get_clim() == (-3, 3) for image in panels)
    assert all(image.get_cmap().name == "RdBu_r" and image.get_interpolation() == "nearest"
               for image in panels)
    colour_bar = panels[-1].colorbar
    assert colour_bar is not None and colour_bar.ax in figure.axes
    assert colour_bar.vmin == -3 and colour_bar.vmax == 3
    # zero is drawn white-ish, negative blue, positive red
    zero, low, high = (panels[0].to_rgba(v) for v in (0.0, -3.0, 3.0))
    assert min(zero[:3]) > 0.9
    assert low[2] > low[0] and high[0] > high[2]
    assert figure.get_size_inches()[0] > 4 * 1.3  # room for the colour bar


def test_show_maps_signed_accepts_all_zero_maps():
    figure = show_maps(torch.zeros(3, 4, 4), columns=3, signed=True)
    assert all(image.get_clim() == (-1, 1) for image in _images(figure)[:3])


def test_show_maps_titles_the_panels():
    assert [ax.get_title() for ax in show_maps(torch.rand(3, 4, 4), columns=3).axes] == ["0", "1", "2"]
    named = show_maps(torch.rand(2, 4, 4), columns=2, titles=["edge", "blur"], signed=True)
    assert [ax.get_title() for ax in named.axes[:2]] == ["edge", "blur"]
    with pytest.raises(ValueError, match="3 titles for 2 maps"):
        show_maps(torch.rand(2, 4, 4), titles=["a", "b", "c"])
