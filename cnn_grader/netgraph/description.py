"""Validate a network description written by the sandbox (untrusted plain data).

``load_graph(data)`` checks every field against fixed limits and returns a ``Graph`` of
frozen dataclasses; ``load_inventory(data)`` does the same for what a constructor built
(modules and parameters, known without a forward pass). Operators outside the rebuild's
vocabulary (``OPS``) are kept as unknown nodes that the rebuild refuses to run; anything
malformed raises ``DescriptionError``. Recorded shapes and lines are kept for messages
only: the trusted side recomputes every shape itself. Gradient-mode markers
(``torch.no_grad()``) compute nothing: each node keeps the mode it was computed in
(``Node.grad``), which only the trainable part reads.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

# The vocabulary: operators the grader can rebuild, as torch.export names them, with
# what each produces (a tensor, a tuple of tensors, or an int: the batch size). A node
# outside it is kept as an unknown operation: the loader accepts it, the rebuild refuses
# to run it, and only the parts that need its result fail (netgraph.words names it in
# the student's terms).
_TENSOR_OPS = (
    # layers
    "conv2d.default", "conv2d.padding", "linear.default",
    # activations (and their in-place forms)
    "relu.default", "relu_.default", "clamp_min.default", "clamp_min_.default",
    "clamp.default", "clamp_.default", "threshold.default", "threshold_.default",
    "leaky_relu.default", "leaky_relu_.default", "gelu.default", "gelu_.default",
    "elu.default", "elu_.default", "selu.default", "selu_.default", "celu.default",
    "celu_.default", "silu.default", "silu_.default", "mish.default", "mish_.default",
    "hardtanh.default", "hardtanh_.default", "relu6.default", "hardswish.default",
    "hardswish_.default", "hardsigmoid.default", "hardsigmoid_.default", "tanh.default",
    "tanh_.default", "sigmoid.default", "sigmoid_.default", "softplus.default",
    # normalisation
    "batch_norm.default", "layer_norm.default", "group_norm.default",
    "instance_norm.default",
    # the softmax family
    "softmax.int", "log_softmax.int", "_softmax.default", "_log_softmax.default",
    # padding
    "pad.default", "constant_pad_nd.default", "reflection_pad2d.default",
    "replication_pad2d.default",
    # pooling (local response normalisation decomposes into avg_pool3d and arithmetic)
    "max_pool2d.default", "avg_pool2d.default", "avg_pool3d.default",
    "adaptive_avg_pool2d.default",
    # identity and dropout variants
    "dropout.default", "dropout_.default", "feature_dropout.default",
    "feature_dropout_.default", "alpha_dropout.default", "alpha_dropout_.default",
    "feature_alpha_dropout.default", "feature_alpha_dropout_.default",
    "detach.default", "clone.default", "contiguous.default", "alias.default",
    # shapes
    "flatten.using_ints", "view.default", "reshape.default", "squeeze.dim", "squeeze.dims",
    "squeeze.default", "unsqueeze.default", "permute.default", "transpose.int",
    "slice.Tensor", "select.int", "expand.default", "t.default",
    # arithmetic: residual additions, concatenation, means
    "add.Tensor", "add_.Tensor", "sub.Tensor", "mul.Tensor", "mul_.Tensor", "div.Tensor",
    "pow.Tensor_Scalar", "neg.default", "cat.default", "mean.dim", "mean.default",
    "sum.dim_IntList", "amax.default", "matmul.default", "mm.default", "addmm.default",
)
OPS: dict[str, str] = {
    **{f"aten.{op}": "tensor" for op in _TENSOR_OPS},
    "aten.max_pool2d_with_indices.default": "tuple",
    "aten.adaptive_max_pool2d.default": "tuple",
    "aten.sym_size.int": "int",
    "getitem": "tensor",  # an element of a tuple (a pool's output, not its indices)
}
# In-place forms and what the rebuild runs instead (export routes later uses to them).
IN_PLACE = {op: op.replace("_.", ".") for op in OPS if re.match(r"aten\.[a-z0-9_]+[a-z0-9]_\.", op)}
# Buffers the grader can rebuild itself (normalisation statistics); any other buffer
# would need the student's values.
KNOWN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
# What changes nothing the grader computes: the rebuild runs in float32 on a device of
# its own choosing, so a move to a device, a layout or a memory format, and a conversion
# to float32, are the identity (an alias of their input), and a metadata assertion is
# nothing. A conversion to another dtype stays and is refused with its own message.
ASSERTIONS = ("aten._assert_tensor_metadata.default",)
MOVES = ("aten.to.dtype", "aten.to.dtype_layout", "aten.to.device", "aten.to.other",
         "aten._to_copy.default", "aten.type_as.default")
FLOAT32 = "float32"
# Arithmetic with its identity element (x * 1, x + 0, ...), and a view or reshape to the
# shape the tensor has, are the identity too.
IDENTITY_ELEMENT = {"aten.mul.Tensor": 1, "aten.div.Tensor": 1, "aten.add.Tensor": 0,
                    "aten.sub.Tensor": 0}
RESHAPES = ("aten.view.default", "aten.reshape.default")
# A marker between the operations: gradients on or off from here (``torch.no_grad()``,
# ``torch.set_grad_enabled``). It computes nothing; the nodes after it record the mode.
GRAD_MODE = "set_grad_enabled"
RETURNS = ("tensor", "tuple")
OP_NAME = re.compile(r"^aten\.[a-z0-9_]{1,60}\.[A-Za-z0-9_]{1,40}$")
UNKNOWN = "unknown"

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,199}$")
MAX_NODES, MAX_PARAMS, MAX_LIST, MAX_DIM = 1000, 200, 16, 1 << 20
MAX_ELEMENTS = 400_000_000  # all parameters of one network together
MAX_INT = 10**9


class DescriptionError(ValueError):
    """The description is not a network the grader can rebuild."""


@dataclass(frozen=True)
class Ref:
    """An argument that refers to a node's result, a parameter or the network's input."""

    kind: str  # "node", "param", "buffer" or "input"
    name: str


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    args: tuple
    kwargs: tuple[tuple[str, Any], ...]
    module: str  # the submodule that ran it ("" for forward() itself)
    shape: tuple[int | None, ...] | None  # as recorded (untrusted, messages only)
    line: str = ""  # the student's line of code that produced it (messages only)
    grad: bool = True  # whether gradients were on when forward() computed it

    @property
    def known(self) -> bool:
        """Whether the grader can rebuild this operation."""
        return self.op in OPS

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
    buffers: tuple[tuple[str, tuple[int, ...]], ...] = ()
    returns: str = "tensor"  # forward() returns the logits ("tensor") or a tuple
    # ("tuple": the logits first, ``output``, then other values)
    drops_in_eval: tuple[str, ...] = ()  # lines of dropouts that stay on in eval mode
    inference_mode: tuple[str, ...] = ()  # lines that compute in torch.inference_mode()

    def kind(self, name: str) -> str:
        """What node ``name`` produces: "tensor", "tuple", "int" or "other"."""
        node = self.node(name)
        if node.known:
            return OPS[node.op]
        return "tensor" if node.shape is not None else "other"

    def module_class(self, path: str) -> str:
        """The first class of the module at ``path`` ("" if unknown)."""
        return next((classes[0] for name, classes in self.modules if name == path and classes),
                    "")

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


def _argument(value: Any, known: set[str], params: set[str], depth: int = 0,
              buffers: frozenset[str] = frozenset()) -> Any:
    """A validated argument: literals, lists of them, or references to what exists."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _int(value, "argument")
    if isinstance(value, float):
        _check(math.isfinite(value), f"argument {value!r} is not allowed")
        return value
    if isinstance(value, str):
        _check(len(value) <= 40 and value.isidentifier(), f"argument {value[:40]!r} is not allowed")
        return value
    if isinstance(value, list):
        _check(depth <= 1 and len(value) <= MAX_LIST, "argument lists are too long or nested")
        return tuple(_argument(v, known, params, depth + 1, buffers) for v in value)
    _check(isinstance(value, dict) and len(value) == 1, f"argument {str(value)[:60]!r} is not allowed")
    (kind, target), = value.items()
    if kind == "node":
        _check(target in known, f"argument refers to {str(target)[:60]!r}, which is not an "
               f"earlier node")
        return Ref("node", target)
    if kind == "param":
        _check(target in params, f"argument refers to an unknown parameter {str(target)[:60]!r}")
        return Ref("param", target)
    if kind == "buffer":
        _check(target in buffers, f"argument refers to an unknown buffer {str(target)[:60]!r}")
        return Ref("buffer", target)
    if kind == "input":
        _check(target == 0, "the network must take exactly one input tensor")
        return Ref("input", "x")
    if kind == "unsupported":
        raise DescriptionError(f"forward() uses a {str(target)[:60]} (a tensor created in "
                               f"forward() or registered as a constant), which the grader "
                               f"cannot rebuild: the networks hold only layers' weights")
    if kind == "dtype" and target != FLOAT32:
        raise DescriptionError(f"forward() converts a tensor to {str(target)[:20]}: the grader "
                               f"builds and checks the network in float32, so leave its dtype "
                               f"as it is")
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


def _buffers(raw: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    _check(isinstance(raw, list) and len(raw) <= MAX_PARAMS, "malformed buffer list")
    buffers = []
    for entry in raw:
        _check(isinstance(entry, dict), "malformed buffer entry")
        name = _name(entry.get("name"), "buffer name")
        shape = entry.get("shape")
        _check(isinstance(shape, list) and len(shape) <= 5, f"{name}: malformed shape")
        dims = tuple(_int(d, f"{name} shape", 1, MAX_DIM) for d in shape)
        _check(math.prod(dims) <= MAX_DIM, f"{name}: buffer too large")
        buffers.append((name, dims))
    return tuple(buffers)


def _node(raw: Any, known: dict[str, str], params: set[str], buffers: frozenset[str]) -> Node:
    _check(isinstance(raw, dict), "malformed node")
    name = _name(raw.get("name"), "node name")
    _check(name not in known and name not in params, f"node {name} is defined twice")
    op = raw.get("op")
    if op not in OPS and not (isinstance(op, str) and OP_NAME.match(op)):
        raise DescriptionError(f"forward() uses {str(op)[:80]!r}, which is not an operation "
                               f"of PyTorch's tensor library")
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
    line = raw.get("line", "")
    line = line[:160] if isinstance(line, str) else ""
    grad = raw.get("grad", True)
    _check(isinstance(grad, bool), f"{name}: malformed gradient mode")
    names = set(known)
    node = Node(name, op, _argument(args, names, params, buffers=buffers),
                tuple((_name(k, "keyword"), _argument(v, names, params, buffers=buffers))
                      for k, v in kwargs.items()), module, recorded, line, grad)
    for ref in node.refs():
        if op in IN_PLACE:
            _check(ref.kind == "node" or (ref.kind == "buffer" and op == "aten.add_.Tensor"),
                   f"{op} may only change intermediate results in place")
        if ref.kind == "node":
            _check(ref.name in known, f"{name} uses {ref.name} before it exists")
    return node


def _changes_nothing(value: Any) -> bool:
    """An argument of a move that leaves a float32 tensor's values as they are."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, dict) and len(value) == 1:
        (kind, target), = value.items()
        return kind in ("other", "node", "param", "buffer") or (kind == "dtype"
                                                                  and target == FLOAT32)
    return False


def _is_identity_element(op: str, args: list, kwargs: dict) -> bool:
    """``x * 1``, ``x / 1``, ``x + 0``, ``x - 0`` (a plain number, no ``alpha``)."""
    if op not in IDENTITY_ELEMENT or len(args) != 2 or kwargs:
        return False
    other = args[1]
    return type(other) in (int, float) and other == IDENTITY_ELEMENT[op]


def _recorded_shape(ref: Any, shapes: dict[str, Any]) -> Any:
    if not isinstance(ref, dict):
        return None
    return shapes.get("input" if ref.get("input") == 0 else ref.get("node"))


def _is_same_shape(args: list, shapes: dict[str, Any], sizes: dict[str, Any]) -> bool:
    """``x.view(x.shape)`` and its spellings: the new shape is the one recorded for ``x``,
    whose first dimension is the batch, given as -1 or as the batch size (export reads it
    from whichever tensor first had it)."""
    if len(args) != 2 or not isinstance(args[1], list):
        return False
    shape = _recorded_shape(args[0], shapes)
    if not isinstance(shape, list) or len(shape) != len(args[1]) or not shape or shape[0]:
        return False
    batch, *rest = args[1]
    if isinstance(batch, dict):
        source, dim = sizes.get(batch.get("node"), (None, None))
        sized = _recorded_shape(source, shapes)
        batch = -1 if (isinstance(sized, list) and type(dim) is int and 0 <= dim < len(sized)
                       and sized[dim] is None) else batch
    return batch == -1 and rest == shape[1:] and all(type(d) is int for d in rest)


def _grad_modes(raw_nodes: list) -> list:
    """``raw_nodes`` without the ``GRAD_MODE`` markers, each node that comes after a
    marker that switched gradients off (and before one that switched them on again)
    with ``"grad": False``."""
    plain, enabled = [], True
    for raw in raw_nodes:
        if isinstance(raw, dict) and raw.get("op") == GRAD_MODE:
            args = raw.get("args")
            _check(isinstance(args, list) and len(args) == 1 and isinstance(args[0], bool)
                   and not raw.get("kwargs"), "malformed gradient mode")
            enabled = args[0]
            continue
        plain.append(raw if enabled or not isinstance(raw, dict) else {**raw, "grad": False})
    return plain


def _lines(raw: Any) -> tuple[str, ...]:
    _check(isinstance(raw, list) and len(raw) <= MAX_LIST
           and all(isinstance(line, str) for line in raw), "malformed list of lines")
    return tuple(line[:160] for line in raw)


def _without_no_ops(raw_nodes: list, input_shape: list) -> list:
    """``raw_nodes`` with every operation that changes nothing (see ``MOVES``,
    ``IDENTITY_ELEMENT``, ``RESHAPES``) an alias of its input, a memory format left out of
    ``contiguous``, and metadata assertions dropped."""
    plain = []
    # Shapes as the sandbox recorded them: a wrong one only changes which network is
    # described, and the described network is what gets graded.
    shapes: dict[str, Any] = {"input": input_shape}
    sizes: dict[str, Any] = {}  # sym_size nodes: (source, dim)
    for raw in raw_nodes:
        op = raw.get("op") if isinstance(raw, dict) else None
        args, kwargs = (raw.get("args"), raw.get("kwargs", {})) if op else (None, None)
        if op in ASSERTIONS:
            continue
        if isinstance(args, list) and args and isinstance(kwargs, dict):
            if op == "aten.sym_size.int" and len(args) == 2:
                sizes[raw.get("name")] = (args[0], args[1])
            on_a_tensor = not (isinstance(args[0], dict) and args[0].get("node") in sizes)
            if on_a_tensor and (
                    op in MOVES and all(_changes_nothing(v) for v in [*args[1:], *kwargs.values()])
                    or _is_identity_element(op, args, kwargs)
                    or (op in RESHAPES and not kwargs and _is_same_shape(args, shapes, sizes))):
                raw = {**raw, "op": "aten.alias.default", "args": args[:1], "kwargs": {}}
            elif op == "aten.contiguous.default" and set(kwargs) <= {"memory_format"}:
                raw = {**raw, "kwargs": {}}
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            shapes[raw["name"]] = raw.get("shape")
        plain.append(raw)
    return plain


def _modules(raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    _check(isinstance(raw, dict) and len(raw) <= 2000, "malformed module list")
    out = []
    for path, classes in raw.items():
        _check(isinstance(path, str) and len(path) <= 300 and isinstance(classes, list)
               and len(classes) <= 32 and all(isinstance(c, str) and len(c) <= 300
                                              for c in classes), "malformed module list")
        out.append((path, tuple(classes)))
    return tuple(out)


@dataclass(frozen=True)
class Inventory:
    """What a network's constructor built: its modules and parameters (no forward pass)."""

    in_channels: int
    num_classes: int
    params: tuple[tuple[str, tuple[int, ...]], ...]  # in registration order
    frozen: tuple[str, ...]
    modules: tuple[tuple[str, tuple[str, ...]], ...]

    def module_class(self, path: str) -> str:
        return next((classes[0] for name, classes in self.modules if name == path and classes),
                    "")


def load_inventory(data: Any) -> Inventory:
    """Validate what the sandbox says a constructor built."""
    _check(isinstance(data, dict), "the description is not an object")
    in_channels = _int(data.get("in_channels"), "in_channels", 1, 16)
    num_classes = _int(data.get("num_classes"), "num_classes", 1, 100_000)
    params, frozen = _params(data.get("params"))
    return Inventory(in_channels, num_classes, params, frozen, _modules(data.get("modules", {})))


def load_graph(data: Any) -> Graph:
    """Validate one configuration's description and return it as a ``Graph``."""
    _check(isinstance(data, dict), "the description is not an object")
    in_channels = _int(data.get("in_channels"), "in_channels", 1, 16)
    num_classes = _int(data.get("num_classes"), "num_classes", 1, 100_000)
    size = _int(data.get("size"), "size", 1, 4096)
    params, frozen = _params(data.get("params"))
    buffers = _buffers(data.get("buffers", []))
    names = {name for name, _shape in params}
    buffer_names = frozenset(name for name, _shape in buffers)
    raw_nodes = data.get("nodes")
    _check(isinstance(raw_nodes, list) and 1 <= len(raw_nodes) <= MAX_NODES,
           f"a network may have between 1 and {MAX_NODES} operations")
    nodes: list[Node] = []
    known: dict[str, str] = {}
    for raw in _without_no_ops(_grad_modes(raw_nodes), [None, in_channels, size, size]):
        node = _node(raw, known, names, buffer_names)
        nodes.append(node)
        known[node.name] = OPS[node.op] if node.known else (
            "tensor" if node.shape is not None else "other")
    output, returns = data.get("output"), data.get("returns", "tensor")
    _check(returns in RETURNS and isinstance(output, list) and output
           and (returns == "tuple" or len(output) == 1),
           "forward() must return the logits: one tensor of shape (batch, num_classes)")
    result = _argument(output[0], set(known), names, depth=1, buffers=buffer_names)
    _check(isinstance(result, Ref) and result.kind == "node" and known[result.name] == "tensor",
           "forward() must return one tensor computed from its input")
    return Graph(in_channels, num_classes, size, params, frozen, tuple(nodes), result,
                 _modules(data.get("modules", {})), buffers, returns,
                 _lines(data.get("drops_in_eval", [])), _lines(data.get("inference_mode", [])))
