"""Validate a network description written by the sandbox (untrusted plain data).

``load_graph(data)`` checks every field against fixed limits and an allowlist of ATen
operators, and returns a ``Graph`` of frozen dataclasses. Anything unexpected raises
``DescriptionError`` with a message that can be shown to the student. Recorded shapes
are kept for messages only: the trusted side recomputes every shape itself.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

# Operators a network of this assignment may use, as torch.export names them. The
# value says what the node produces: a tensor, or an int (the batch size).
OPS: dict[str, str] = {
    **{op: "tensor" for op in (
        "aten.conv2d.default", "aten.linear.default",
        "aten.relu.default", "aten.relu_.default", "aten.clamp_min.default",
        "aten.max_pool2d.default", "aten.avg_pool2d.default", "aten.avg_pool3d.default",
        "aten.adaptive_avg_pool2d.default",
        "aten.dropout.default",
        "aten.flatten.using_ints", "aten.view.default", "aten.reshape.default",
        "aten.squeeze.dim", "aten.unsqueeze.default", "aten.contiguous.default",
        "aten.pad.default", "aten.constant_pad_nd.default",
        "aten.mul.Tensor", "aten.add.Tensor", "aten.div.Tensor", "aten.pow.Tensor_Scalar",
        "aten.detach.default", "aten.clone.default",
    )},
    "aten.sym_size.int": "int",
}
IN_PLACE = {"aten.relu_.default": "aten.relu.default"}

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,199}$")
MAX_NODES, MAX_PARAMS, MAX_LIST, MAX_DIM = 1000, 200, 16, 1 << 20
MAX_ELEMENTS = 400_000_000  # all parameters of one network together
MAX_INT = 10**9


class DescriptionError(ValueError):
    """The description is not a network the grader can rebuild."""


@dataclass(frozen=True)
class Ref:
    """An argument that refers to a node's result, a parameter or the network's input."""

    kind: str  # "node", "param" or "input"
    name: str


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    args: tuple
    kwargs: tuple[tuple[str, Any], ...]
    module: str  # the submodule that ran it ("" for forward() itself)
    shape: tuple[int | None, ...] | None  # as recorded (untrusted, messages only)

    def refs(self) -> list[Ref]:
        """Every reference among the arguments, in order."""
        found: list[Ref] = []

        def collect(value: Any) -> None:
            if isinstance(value, Ref):
                found.append(value)
            elif isinstance(value, tuple):
                for item in value:
                    collect(item)

        collect(self.args)
        collect(tuple(v for _k, v in self.kwargs))
        return found


@dataclass(frozen=True)
class Graph:
    """One network, built for one (in_channels, num_classes) and input size."""

    in_channels: int
    num_classes: int
    size: int
    params: tuple[tuple[str, tuple[int, ...]], ...]  # in the order export lists them
    frozen: tuple[str, ...]  # parameters with requires_grad=False
    nodes: tuple[Node, ...]
    output: Ref
    modules: tuple[tuple[str, tuple[str, ...]], ...]  # module path -> its classes (MRO)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def users(self) -> dict[str, list[Node]]:
        """node or parameter name -> the nodes that use it."""
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for ref in node.refs():
                users.setdefault(ref.name, []).append(node)
        return users


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DescriptionError(message)


def _int(value: Any, what: str, low: int = -MAX_INT, high: int = MAX_INT) -> int:
    _check(type(value) is int and low <= value <= high, f"{what}: expected an integer, "
           f"found {str(value)[:40]!r}")
    return value


def _name(value: Any, what: str) -> str:
    _check(isinstance(value, str) and bool(NAME.match(value)),
           f"{what}: {str(value)[:60]!r} is not an allowed name")
    return value


def _argument(value: Any, known: set[str], params: set[str], depth: int = 0) -> Any:
    """A validated argument: literals, lists of them, or references to what exists."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _int(value, "argument")
    if isinstance(value, float):
        _check(math.isfinite(value) and abs(value) <= MAX_INT, f"argument {value!r} is not allowed")
        return value
    if isinstance(value, list):
        _check(depth <= 1 and len(value) <= MAX_LIST, "argument lists are too long or nested")
        return tuple(_argument(v, known, params, depth + 1) for v in value)
    _check(isinstance(value, dict) and len(value) == 1, f"argument {str(value)[:60]!r} is not allowed")
    (kind, target), = value.items()
    if kind == "node":
        _check(target in known, f"argument refers to {str(target)[:60]!r}, which is not an "
               f"earlier node")
        return Ref("node", target)
    if kind == "param":
        _check(target in params, f"argument refers to an unknown parameter {str(target)[:60]!r}")
        return Ref("param", target)
    if kind == "input":
        _check(target == 0, "the network must take exactly one input tensor")
        return Ref("input", "x")
    if kind == "unsupported":
        raise DescriptionError(f"forward() uses a {str(target)[:60]}, which the grader does not "
                               f"accept: the networks hold only Conv2d/Linear weights")
    raise DescriptionError(f"argument of kind {str(kind)[:30]!r} is not allowed")


def _params(raw: Any) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], tuple[str, ...]]:
    _check(isinstance(raw, list) and len(raw) <= MAX_PARAMS,
           f"a network may have at most {MAX_PARAMS} parameter tensors")
    params, frozen, total = [], [], 0
    for entry in raw:
        _check(isinstance(entry, dict), "malformed parameter entry")
        name = _name(entry.get("name"), "parameter name")
        shape = entry.get("shape")
        _check(isinstance(shape, list) and 1 <= len(shape) <= 5, f"{name}: malformed shape")
        dims = tuple(_int(d, f"{name} shape", 1, MAX_DIM) for d in shape)
        total += math.prod(dims)
        _check(total <= MAX_ELEMENTS, f"the parameters exceed {MAX_ELEMENTS:,} numbers")
        _check(name not in dict(params), f"parameter {name} is listed twice")
        params.append((name, dims))
        if entry.get("requires_grad") is False:
            frozen.append(name)
    return tuple(params), tuple(frozen)


def _node(raw: Any, known: set[str], params: set[str]) -> Node:
    _check(isinstance(raw, dict), "malformed node")
    name = _name(raw.get("name"), "node name")
    _check(name not in known and name not in params, f"node {name} is defined twice")
    op = raw.get("op")
    if op not in OPS:
        raise DescriptionError(f"forward() uses {str(op)[:80]!r}, which is not among the "
                               f"operations a Conv2d/ReLU/MaxPool2d/Linear network needs "
                               f"(torch.no_grad() and custom autograd code count as such)")
    args = raw.get("args")
    kwargs = raw.get("kwargs", {})
    _check(isinstance(args, list) and len(args) <= MAX_LIST and isinstance(kwargs, dict)
           and len(kwargs) <= 8,
           f"{name}: malformed arguments")
    shape = raw.get("shape")
    recorded = None
    if isinstance(shape, list) and len(shape) <= 6 and all(
            s is None or (type(s) is int and 0 <= s <= MAX_INT) for s in shape):
        recorded = tuple(shape)
    module = raw.get("module", "")
    _check(isinstance(module, str) and len(module) <= 200, f"{name}: malformed module path")
    node = Node(name, op, _argument(args, known, params),
                tuple((_name(k, "keyword"), _argument(v, known, params))
                      for k, v in kwargs.items()), module, recorded)
    for ref in node.refs():
        if op in IN_PLACE:
            _check(ref.kind == "node", f"{op} may only change intermediate results in place")
        if ref.kind == "node":
            _check(ref.name in known, f"{name} uses {ref.name} before it exists")
    return node


def _modules(raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    _check(isinstance(raw, dict) and len(raw) <= 2000, "malformed module list")
    out = []
    for path, classes in raw.items():
        _check(isinstance(path, str) and len(path) <= 300 and isinstance(classes, list)
               and len(classes) <= 32 and all(isinstance(c, str) and len(c) <= 300
                                              for c in classes), "malformed module list")
        out.append((path, tuple(classes)))
    return tuple(out)


def load_graph(data: Any) -> Graph:
    """Validate one configuration's description and return it as a ``Graph``."""
    _check(isinstance(data, dict), "the description is not an object")
    in_channels = _int(data.get("in_channels"), "in_channels", 1, 16)
    num_classes = _int(data.get("num_classes"), "num_classes", 1, 100_000)
    size = _int(data.get("size"), "size", 1, 4096)
    params, frozen = _params(data.get("params"))
    names = {name for name, _shape in params}
    raw_nodes = data.get("nodes")
    _check(isinstance(raw_nodes, list) and 1 <= len(raw_nodes) <= MAX_NODES,
           f"a network may have between 1 and {MAX_NODES} operations")
    nodes: list[Node] = []
    known: set[str] = set()
    for raw in raw_nodes:
        nodes.append(_node(raw, known, names))
        known.add(nodes[-1].name)
    output = data.get("output")
    _check(isinstance(output, list) and len(output) == 1,
           "forward() must return one tensor of logits")
    result = _argument(output[0], known, names, depth=1)
    _check(isinstance(result, Ref) and result.kind == "node" and OPS[
        next(n.op for n in nodes if n.name == result.name)] == "tensor",
           "forward() must return one tensor computed from its input")
    return Graph(in_channels, num_classes, size, params, frozen, tuple(nodes), result,
                 _modules(data.get("modules", {})))
