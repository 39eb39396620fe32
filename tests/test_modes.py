"""Modes are read as such (issue 27): a gradient-mode switch in forward() computes nothing
and costs only the trainable part, a dropout that stays on in eval mode is recorded with
its line, and a forward() that returns a tuple is described with its first value as the
logits (cnn_grader/describe_child.py, netgraph/description.py, netgraph/analysis.py).
Whole networks through every part: the corpus (tests/grading_corpus.py) and
tests/test_equivalent_programs.py."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnn_grader.describe_child import describe_config
from cnn_grader.hidden_checks.checks import _inference_mode_problem
from cnn_grader.netgraph.analysis import no_grad_problem
from cnn_grader.netgraph.description import DescriptionError, Graph, load_graph


class Tiny(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3)
        self.fc = nn.Linear(4, num_classes)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = self.conv(x)
        return self.fc(x.mean((2, 3)))


def graph(cls: type) -> Graph:
    return load_graph(describe_config(cls, 3, 10, 8))


def ops(g: Graph) -> list[str]:
    return [node.op for node in g.nodes]


# ----------------------------------------------------------------------------- gradient mode
class NoGradForward(Tiny):
    @torch.no_grad()
    def forward(self, x):
        x = self.conv(x)
        return self.fc(x.mean((2, 3)))


class NoGradConv(Tiny):
    def forward(self, x):
        with torch.no_grad():
            x = self.conv(x)
        return self.fc(x.mean((2, 3)))


class GradOffThenOn(Tiny):
    def forward(self, x):
        with torch.set_grad_enabled(False):
            x = self.conv(x)
            with torch.enable_grad():
                x = x.mean((2, 3))
        return self.fc(x)


class EnableGrad(Tiny):
    @torch.enable_grad()
    def forward(self, x):
        with torch.set_grad_enabled(True):
            x = self.conv(x)
        return self.fc(x.mean((2, 3)))


def test_no_grad_around_forward_computes_what_forward_computes_without_it():
    plain, off = graph(Tiny), graph(NoGradForward)
    assert ops(off) == ops(plain)
    assert [n.grad for n in plain.nodes] == [True, True, True]
    assert [n.grad for n in off.nodes] == [False, False, False]


def test_a_no_grad_block_covers_exactly_its_operations():
    g = graph(NoGradConv)
    assert [(n.op, n.grad) for n in g.nodes] == [
        ("aten.conv2d.default", False), ("aten.mean.dim", True), ("aten.linear.default", True)]


def test_gradient_modes_nest():
    g = graph(GradOffThenOn)
    assert [(n.op, n.grad) for n in g.nodes] == [
        ("aten.conv2d.default", False), ("aten.mean.dim", True), ("aten.linear.default", True)]


def test_switching_gradients_on_where_they_are_on_changes_nothing():
    assert [(n.op, n.grad) for n in graph(EnableGrad).nodes] == [
        (n.op, n.grad) for n in graph(Tiny).nodes]


def test_layers_that_no_gradient_reaches_are_named_with_the_line_that_computes_them():
    assert no_grad_problem(graph(Tiny)) is None
    assert no_grad_problem(graph(NoGradForward)) == (
        "forward() computes with gradients switched off (torch.no_grad() or "
        "torch.set_grad_enabled(False)) from forward(), line `x = self.conv(x)`: no gradient "
        "reaches conv1 to fc1, which would never be trained. Leave gradients on in forward(): "
        "evaluation switches them off itself")


def test_a_layer_before_a_no_grad_block_gets_no_gradient_either():
    message = no_grad_problem(graph(NoGradConv))
    assert message is not None and "reaches conv1," in message, message


def test_a_no_grad_block_that_no_layer_needs_costs_nothing():
    class SideComputation(Tiny):
        def forward(self, x):
            with torch.no_grad():
                scale = x.abs().amax()
            return self.fc(self.conv(x).mean((2, 3))) + scale * 0
    assert any(not n.grad for n in graph(SideComputation).nodes)
    assert no_grad_problem(graph(SideComputation)) is None


@pytest.mark.parametrize("marker, error", [
    ({"args": ["off"]}, "malformed gradient mode"),
    ({"args": [False, True]}, "malformed gradient mode"),
    ({"args": [False], "kwargs": {"mode": 1}}, "malformed gradient mode"),
])
def test_a_malformed_gradient_marker_is_refused(marker, error):
    raw = describe_config(NoGradForward, 3, 10, 8)
    first = next(n for n in raw["nodes"] if n["op"] == "set_grad_enabled")
    first.update(marker)
    with pytest.raises(DescriptionError, match=error):
        load_graph(raw)


def test_a_malformed_gradient_flag_is_refused():
    raw = describe_config(Tiny, 3, 10, 8)
    raw["nodes"][0]["grad"] = "off"
    with pytest.raises(DescriptionError, match="malformed gradient mode"):
        load_graph(raw)


# ----------------------------------------------------------------------------- what forward returns
class ReturnsMaps(Tiny):
    def forward(self, x):
        maps = self.conv(x)
        return self.fc(maps.mean((2, 3))), maps


def test_a_tuple_is_described_with_its_first_value_as_the_logits():
    g = graph(ReturnsMaps)
    assert (g.returns, g.node(g.output.name).op) == ("tuple", "aten.linear.default")
    assert graph(Tiny).returns == "tensor"


@pytest.mark.parametrize("wrap", [
    lambda y, maps: {"logits": y, "maps": maps},
    lambda y, maps: ((y, maps), maps),
], ids=["dict", "tuple-of-tuples"])
def test_any_other_return_value_is_refused_as_not_the_logits(wrap):
    class Returns(Tiny):
        def forward(self, x):
            maps = self.conv(x)
            return wrap(self.fc(maps.mean((2, 3))), maps)
    with pytest.raises(DescriptionError, match=r"forward\(\) must return the logits: one tensor "
                                               r"of shape \(batch, num_classes\)"):
        graph(Returns)


def test_one_tensor_with_more_outputs_is_refused():
    """A hostile description: "tensor" with two outputs is neither form."""
    raw = describe_config(ReturnsMaps, 3, 10, 8)
    raw["returns"] = "tensor"
    with pytest.raises(DescriptionError, match="must return the logits"):
        load_graph(raw)


# ----------------------------------------------------------------------------- dropout in eval mode
def with_dropout(dropout) -> type:
    class Dropping(Tiny):
        def forward(self, x):
            x = self.conv(x).mean((2, 3))
            x = dropout(self, x)
            return self.fc(x)
    return Dropping


ALWAYS_ON = {
    "F.dropout(x, 0.5)": lambda self, x: F.dropout(x, 0.5),
    "F.dropout(x, p=0.5, training=True)": lambda self, x: F.dropout(x, p=0.5, training=True),
    "F.dropout(x, training=not self.training)": lambda self, x: F.dropout(
        x, training=not self.training),
    "torch.dropout(x, 0.5, True)": lambda self, x: torch.dropout(x, 0.5, True),
    "F.alpha_dropout(x, 0.5, True)": lambda self, x: F.alpha_dropout(x, 0.5, True),
    "F.dropout1d(x[..., None], 0.5)": lambda self, x: F.dropout1d(x[..., None], 0.5)[..., 0],
}
FOLLOWS_MODE = {
    "nn.Dropout": lambda self, x: self.drop(x),
    "F.dropout(x, 0.5, training=self.training)": lambda self, x: F.dropout(
        x, 0.5, training=self.training),
    "F.dropout(x, 0.5, self.training)": lambda self, x: F.dropout(x, 0.5, self.training),
    "F.alpha_dropout(x, 0.5)": lambda self, x: F.alpha_dropout(x, 0.5),
    "torch.dropout(x, 0.5, self.training)": lambda self, x: torch.dropout(x, 0.5, self.training),
}


@pytest.mark.parametrize("name", ALWAYS_ON)
def test_a_dropout_that_stays_on_in_eval_mode_is_recorded_with_its_line(name):
    g = graph(with_dropout(ALWAYS_ON[name]))
    assert len(g.drops_in_eval) == 1 and g.drops_in_eval[0].startswith(
        f'"{name}": lambda self, x: '), g.drops_in_eval


@pytest.mark.parametrize("name", FOLLOWS_MODE)
def test_a_dropout_that_follows_the_mode_is_not_recorded(name):
    assert graph(with_dropout(FOLLOWS_MODE[name])).drops_in_eval == ()


def test_the_eval_mode_run_leaves_the_network_in_training_mode():
    model = with_dropout(ALWAYS_ON["F.dropout(x, 0.5)"])().to("meta")
    from cnn_grader.describe_child import eval_dropouts
    assert eval_dropouts(model, torch.zeros(2, 3, 8, 8, device="meta")) != []
    assert all(m.training for m in model.modules())


def test_a_forward_that_fails_in_eval_mode_records_nothing():
    class TrainingOnly(Tiny):
        def forward(self, x):
            if not self.training:
                raise RuntimeError("only in training")
            return self.fc(F.dropout(self.conv(x).mean((2, 3)), 0.5))
    assert graph(TrainingOnly).drops_in_eval == ()


def test_recorded_lines_are_bounded_and_must_be_text():
    raw = describe_config(Tiny, 3, 10, 8)
    raw["drops_in_eval"] = ["x" * 500]
    assert load_graph(raw).drops_in_eval == ("x" * 160,)
    for bad in (["a"] * 17, [3], "line"):
        raw["drops_in_eval"] = bad
        with pytest.raises(DescriptionError, match="malformed list of lines"):
            load_graph(raw)


# ----------------------------------------------------------------------------- inference mode
class InferenceForward(Tiny):
    @torch.inference_mode()
    def forward(self, x):
        x = self.conv(x)
        return self.fc(x.mean((2, 3)))


class InferenceOff(Tiny):
    def forward(self, x):
        with torch.inference_mode(False):
            return super().forward(x)


def test_computing_in_inference_mode_is_recorded_with_its_line():
    """Export shows no trace of torch.inference_mode() around forward: the describer
    records it, and the trainable part says so in the student's words. (A block inside a
    training-mode forward raises PyTorch's own error there, with the student's line.)"""
    g, line = graph(InferenceForward), "x = self.conv(x)"
    assert g.inference_mode and g.inference_mode[0] == line, g.inference_mode
    assert ops(g) == ops(graph(Tiny))  # the computation itself is the same
    message = _inference_mode_problem(g)
    assert message and f"line `{line}`" in message and "inference_mode()" in message


@pytest.mark.parametrize("cls", [Tiny, InferenceOff])
def test_a_forward_outside_inference_mode_records_nothing(cls):
    g = graph(cls)
    assert g.inference_mode == () and _inference_mode_problem(g) is None
