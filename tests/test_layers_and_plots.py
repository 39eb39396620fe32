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


# Class activation maps (cnn_course.cam) on networks built as exercise 4 asks.
class _GapSequential(nn.Module):
    def __init__(self, in_channels=1, classes=10):
        super().__init__()
        layers = []
        for out_channels in (32, 64, 128):
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, classes))

    def forward(self, x):
        return self.head(self.features(x))


class _GapFunctional(nn.Module):
    """Pooling before the ReLU, a mean instead of a pooling module, a 1x1 convolution head."""

    def __init__(self, in_channels=1, classes=10):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1)
                                   for i, o in ((in_channels, 32), (32, 64), (64, 128)))
        self.out = nn.Conv2d(128, classes, 1)

    def forward(self, x):
        for conv in self.convs:
            x = torch.relu(torch.nn.functional.max_pool2d(conv(x), 2))
        return self.out(x.mean(dim=(2, 3), keepdim=True)).flatten(1)


def _maps_of(model_class, side=28):
    """The model (seeded, its head's bias far from zero so that forgetting it shows) and
    gap_network_maps' (maps, logits, bias, features) for six random images."""
    from cnn_course.cam import gap_network_maps
    torch.manual_seed(0)
    model = model_class()
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None and m.bias.shape == (10,):
                m.bias.copy_(torch.linspace(-2, 2, 10))
    return model, gap_network_maps(model, torch.rand(6, 1, side, side))


@pytest.mark.parametrize("model_class", [_GapSequential, _GapFunctional])
@pytest.mark.parametrize("side", [28, 40])
def test_class_score_is_the_mean_of_its_activation_map_plus_the_bias(model_class, side):
    from cnn_course.cam import score_gap
    _, (maps, logits, bias, features) = _maps_of(model_class, side)
    blocks = side // 8
    assert maps.shape == (6, 10, blocks, blocks) and features.shape == (6, 128, blocks, blocks)
    assert score_gap(maps, logits, bias) < 1e-5
    assert logits.abs().max() > 0.1  # the identity is not met by all-zero scores


def _wrong_row(features, weight):
    from cnn_course.cam import class_activation_maps
    return class_activation_maps(features, weight.roll(1, dims=0))


def _no_weights(features, weight):
    return features.sum(dim=1, keepdim=True).expand(-1, weight.shape[0], -1, -1)


def _weights_of_the_predicted_class_only(features, weight):
    from cnn_course.cam import class_activation_maps
    return class_activation_maps(features, weight[:1].expand_as(weight))


def _before_relu(features, weight):
    from cnn_course.cam import class_activation_maps
    return class_activation_maps(features - features.mean(), weight)


@pytest.mark.parametrize("bug", [_wrong_row, _no_weights, _weights_of_the_predicted_class_only,
                                 _before_relu])
def test_planted_bugs_in_the_maps_break_the_identity(bug):
    from cnn_course.cam import linear_head, score_gap
    model, (maps, logits, bias, features) = _maps_of(_GapSequential)
    weight, _ = linear_head(model)
    assert score_gap(maps, logits, bias) < 1e-5
    assert score_gap(bug(features, weight), logits, bias) > 1e-2


def test_forgetting_the_bias_breaks_the_identity():
    from cnn_course.cam import score_gap
    _, (maps, logits, bias, _) = _maps_of(_GapSequential)
    assert score_gap(maps, logits, None) > 1


def test_maps_need_a_global_average_pooling_head():
    from cnn_course.cam import gap_network_maps
    with pytest.raises(ValueError, match=r"features \[N, K, H, W\] and weight \[C, K\]"):
        gap_network_maps(NaiveConvNet(), torch.rand(2, 1, 28, 28))
