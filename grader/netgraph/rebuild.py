"""Rebuild a validated ``Graph`` as an ``nn.Module`` that runs only the grader's code.

The module owns fresh parameters of the described shapes and interprets the nodes
with the allowlisted ATen operators. Differences from the exported graph, on purpose:
dropout follows the module's own ``train()``/``eval()`` mode (export fixes it), and
in-place ReLUs run out of place (export already routes later uses to their result).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .description import IN_PLACE, Graph, Node, Ref


def _aten(op: str) -> Callable[..., Any]:
    """``aten.conv2d.default`` -> ``torch.ops.aten.conv2d.default``."""
    _ns, name, overload = op.split(".")
    return getattr(getattr(torch.ops.aten, name), overload)


def _sym_size(tensor: torch.Tensor, dim: int) -> int:
    return int(tensor.shape[dim])


class Rebuilt(nn.Module):
    """The described network; ``param(name)`` gives a parameter by its student-side name."""

    def __init__(self, graph: Graph, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.graph = graph
        self.names = [name for name, _shape in graph.params]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(shape, device=device), requires_grad=name not in graph.frozen)
            for name, shape in graph.params)
        self._index = {name: i for i, name in enumerate(self.names)}
        self._calls = [self._callable(node) for node in graph.nodes]

    @staticmethod
    def _callable(node: Node) -> Callable[..., Any]:
        if node.op == "aten.sym_size.int":
            return _sym_size
        return _aten(IN_PLACE.get(node.op, node.op))

    def param(self, name: str) -> nn.Parameter:
        return self.weights[self._index[name]]

    def named_graph_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(name, self.weights[i]) for i, name in enumerate(self.names)]

    def _resolve(self, value: Any, env: dict[str, Any], x: torch.Tensor) -> Any:
        if isinstance(value, Ref):
            if value.kind == "node":
                return env[value.name]
            if value.kind == "param":
                return self.param(value.name)
            return x
        if isinstance(value, tuple):
            return [self._resolve(v, env, x) for v in value]
        return value

    def forward(self, x: torch.Tensor, record: dict[str, Any] | None = None) -> torch.Tensor:
        """Run the graph; ``record`` (optional) receives every node's result by name."""
        env: dict[str, Any] = {}
        for node, call in zip(self.graph.nodes, self._calls):
            args = [self._resolve(a, env, x) for a in node.args]
            kwargs = {k: self._resolve(v, env, x) for k, v in node.kwargs}
            if node.op == "aten.dropout.default":
                args = [args[0], args[1], self.training]
                kwargs = {}
            env[node.name] = call(*args, **kwargs)
        if record is not None:
            record.update(env)
        return env[self.graph.output.name]
