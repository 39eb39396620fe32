"""Rebuild a validated ``Graph`` as an ``nn.Module`` that runs only the grader's code.

The module owns fresh parameters of the described shapes (and fresh normalisation
statistics) and interprets the nodes with the vocabulary's ATen operators only. An
unknown operation is never run: ``blocker`` names the first one a result needs, and
running it raises ``NotRebuildable``. Differences from the exported graph, on purpose:
dropout and batch normalisation follow the module's own ``train()``/``eval()`` mode
(export fixes it), gradients are on wherever the grader's own code has them on (a
``torch.no_grad()`` region of forward() is read by the trainable part, never run), and
in-place operations run out of place (export already routes later uses to their
result); counting batches (``num_batches_tracked += 1``) is skipped.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .description import IN_PLACE, KNOWN_BUFFERS, Graph, Node, Ref
from .words import located

# Operators whose ``training`` argument follows the module's mode: index of that argument.
# In-place forms (``nn.Dropout(inplace=True)``) too: else they would drop in eval mode.
TRAINING_ARG = {f"aten.{name}{form}.default": 2
                for name in ("dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout")
                for form in ("", "_")} | {"aten.batch_norm.default": 5}


class NotRebuildable(RuntimeError):
    """The network uses something the grader cannot rebuild; the message is the student's."""


def _aten(op: str) -> Callable[..., Any]:
    """``aten.conv2d.default`` -> ``torch.ops.aten.conv2d.default`` (vocabulary only)."""
    _ns, name, overload = op.split(".")
    return getattr(getattr(torch.ops.aten, name), overload)


def _sym_size(tensor: torch.Tensor, dim: int) -> int:
    return int(tensor.shape[dim])


def _buffer_value(name: str, shape: tuple[int, ...], device: Any) -> torch.Tensor | None:
    """Fresh normalisation statistics; None for a buffer whose values only the student has."""
    kind = name.rsplit(".", 1)[-1]
    if kind == "running_mean":
        return torch.zeros(shape, device=device)
    if kind == "running_var":
        return torch.ones(shape, device=device)
    if kind == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.long, device=device)
    return None


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
        self._buffers_by_name: dict[str, torch.Tensor | None] = {}
        for i, (name, shape) in enumerate(graph.buffers):
            value = _buffer_value(name, shape, device)
            self._buffers_by_name[name] = value
            if value is not None:
                self.register_buffer(f"buffer{i}", value)
        self._calls = [self._callable(node) for node in graph.nodes]

    @staticmethod
    def _callable(node: Node) -> Callable[..., Any] | None:
        if not node.known:
            return None
        if node.op == "aten.sym_size.int":
            return _sym_size
        if node.op == "getitem":
            return operator.getitem
        return _aten(IN_PLACE.get(node.op, node.op))

    def param(self, name: str) -> nn.Parameter:
        return self.weights[self._index[name]]

    def named_graph_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(name, self.weights[i]) for i, name in enumerate(self.names)]

    def needed(self, targets: Iterable[str] | None = None) -> set[str]:
        """The nodes whose results ``targets`` (default: the output) depend on."""
        wanted = set(targets) if targets is not None else {self.graph.output.name}
        for node in reversed(self.graph.nodes):
            if node.name in wanted:
                wanted.update(r.name for r in node.refs() if r.kind == "node")
        return wanted

    def _skipped(self, node: Node) -> bool:
        """Counting batches on a normalisation layer's statistics: nothing to compute."""
        return node.op == "aten.add_.Tensor" and any(
            r.kind == "buffer" and r.name.endswith("num_batches_tracked") for r in node.refs())

    def blocker(self, targets: Iterable[str] | None = None) -> str | None:
        """Why ``targets`` cannot be computed: the first unknown operation or buffer they need."""
        needed = self.needed(targets)
        for node in self.graph.nodes:
            if node.name not in needed or self._skipped(node):
                continue
            if not node.known:
                return (f"forward() uses {located(node, self.graph)}, which the grader cannot "
                        f"rebuild: the parts that need that result cannot be checked")
            for ref in node.refs():
                if ref.kind == "buffer" and self._buffers_by_name.get(ref.name) is None:
                    return (f"forward() uses the registered buffer {ref.name} "
                            f"({located(node, self.graph)}), whose values the grader cannot "
                            f"rebuild: only normalisation statistics ({', '.join(KNOWN_BUFFERS)})"
                            f" are rebuilt")
        return None

    def _resolve(self, value: Any, env: dict[str, Any], x: torch.Tensor) -> Any:
        if isinstance(value, Ref):
            if value.kind == "node":
                return env[value.name]
            if value.kind == "param":
                return self.param(value.name)
            if value.kind == "buffer":
                return self._buffers_by_name[value.name]
            return x
        if isinstance(value, tuple):
            return [self._resolve(v, env, x) for v in value]
        return value

    def forward(self, x: torch.Tensor, record: dict[str, Any] | None = None,
                targets: Iterable[str] | None = None) -> torch.Tensor | None:
        """Run the graph up to ``targets`` (default: the output); ``record`` (optional)
        receives every computed node's result by name."""
        targets = list(targets) if targets is not None else None
        problem = self.blocker(targets)
        if problem:
            raise NotRebuildable(problem)
        needed = self.needed(targets)
        env: dict[str, Any] = {}
        for node, call in zip(self.graph.nodes, self._calls):
            if node.name not in needed or self._skipped(node):
                continue
            args = [self._resolve(a, env, x) for a in node.args]
            kwargs = {k: self._resolve(v, env, x) for k, v in node.kwargs}
            if node.op in TRAINING_ARG:
                where = TRAINING_ARG[node.op]
                args = args + [None] * (where + 1 - len(args))
                args[where] = self.training
                kwargs.pop("train", None)
                kwargs.pop("training", None)
            env[node.name] = call(*args, **kwargs)
        if record is not None:
            record.update(env)
        return env.get(self.graph.output.name)
