"""Moves that change nothing the grader computes are read as the identity; a real change
of dtype is refused with a message in the student's terms (netgraph/description.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnn_grader.describe_child import describe_config
from cnn_grader.netgraph.description import DescriptionError, load_graph


def tiny(move) -> type:
    class Tiny(nn.Module):
        def __init__(self, in_channels=3, num_classes=10):
            super().__init__()
            self.fc = nn.Linear(in_channels, num_classes)

        def forward(self, x):
            return self.fc(move(self, x).mean((2, 3)))
    return Tiny


def ops(move) -> list[str]:
    return [node.op for node in load_graph(describe_config(tiny(move), 3, 10, 8)).nodes]


PLAIN = ops(lambda self, x: x)

MOVES = {
    "to(device)": lambda self, x: x.to(self.fc.weight.device),
    "to(device, float32)": lambda self, x: x.to(self.fc.weight.device, torch.float32),
    "to(dtype=..., non_blocking)": lambda self, x: x.to(dtype=torch.float32, non_blocking=True),
    "to(tensor)": lambda self, x: x.to(self.fc.weight),
    "float()": lambda self, x: x.float(),
    "type_as(weight)": lambda self, x: x.type_as(self.fc.weight),
    "contiguous(channels_last)": lambda self, x: x.contiguous(
        memory_format=torch.channels_last),
    "all of them": lambda self, x: x.float().to(self.fc.weight).contiguous(
        memory_format=torch.channels_last).type_as(self.fc.weight),
}


@pytest.mark.parametrize("name", MOVES)
def test_a_move_that_changes_nothing_is_the_identity(name):
    found = ops(MOVES[name])
    assert [op for op in found if op not in ("aten.alias.default", "aten.contiguous.default")
            ] == PLAIN, found


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_a_change_of_dtype_is_refused_in_the_students_terms(dtype):
    move = tiny(lambda self, x: x.to(getattr(torch, dtype)))
    with pytest.raises(DescriptionError, match=f"forward\\(\\) converts a tensor to {dtype}: "
                                               "the grader builds and checks the network in "
                                               "float32"):
        load_graph(describe_config(move, 3, 10, 8))


def test_a_move_with_any_other_argument_is_not_read_as_the_identity():
    """Only arguments that leave values alone make a move an alias: with a number added
    (a hostile description) the move is refused, never taken for the identity."""
    raw = describe_config(tiny(lambda self, x: x.float()), 3, 10, 8)
    move = next(n for n in raw["nodes"] if n["op"] == "aten.to.dtype")
    move["args"].append(3)
    with pytest.raises(DescriptionError, match="argument of kind 'dtype' is not allowed"):
        load_graph(raw)
