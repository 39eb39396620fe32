"""Compare a described network (a validated ``Graph``) with the paper's AlexNet or VGG16.

Structural checks read the graph itself; ``equivalence_problem`` runs the rebuilt student
network and a functional implementation of the paper's network with the same weights.
Every problem is a message for the student that names, in the paper's terms ("conv2",
"max-pool 1", "fc1"), the first layer where the network departs from the paper.

``stages(graph)`` reduces the graph to a canonical chain of ``Stage``s: the allowed
variants (nn.Sequential or attributes, ``F.relu``/``nn.ReLU``/in-place ReLU, the ways
of flattening, ``nn.LocalResponseNorm``/``F.local_response_norm``) give the same chain.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from cnn_grader.paper import Layer, ModelSpec, get_spec

from .description import IN_PLACE, Graph, Inventory, Node, Ref
from .rebuild import NotRebuildable, Rebuilt
from .words import located, operation
from .words import where as _located_at

CONV, LINEAR = "aten.conv2d.default", "aten.linear.default"
CONVS = (CONV, "aten.conv2d.padding")  # numeric or string padding ("same", "valid")
LAYER_OPS = (*CONVS, LINEAR)
MAX_POOL, AVG_POOL = "aten.max_pool2d.default", "aten.avg_pool2d.default"
MAX_POOLS = (MAX_POOL, "aten.max_pool2d_with_indices.default")
DETACH = "aten.detach.default"
TRANSPARENT = (DETACH, "aten.clone.default", "aten.contiguous.default", "aten.alias.default")
DROPOUTS = ("aten.dropout.default", "aten.feature_dropout.default", "aten.alpha_dropout.default",
            "aten.feature_alpha_dropout.default")
NORMS = ("aten.batch_norm.default", "aten.layer_norm.default", "aten.group_norm.default",
         "aten.instance_norm.default")
ACTIVATIONS = tuple(f"aten.{name}.default" for name in (
    "leaky_relu", "gelu", "elu", "selu", "celu", "silu", "mish", "hardtanh", "relu6",
    "hardswish", "hardsigmoid", "tanh", "sigmoid", "softplus", "clamp_min", "clamp",
    "threshold"))
PADS = ("aten.pad.default", "aten.constant_pad_nd.default")
# F.local_response_norm on a 4-d input, as torch.export writes it after ``x * x`` (its
# second view keeps the shape, so the loader reads it as an alias: description.RESHAPES).
LRN_OPS = (("aten.view.default",), ("aten.pad.default", "aten.constant_pad_nd.default"),
           ("aten.avg_pool3d.default",), ("aten.squeeze.dim",),
           ("aten.view.default", "aten.alias.default"),
           ("aten.mul.Tensor",), ("aten.add.Tensor",), ("aten.pow.Tensor_Scalar",),
           ("aten.div.Tensor",))
TOLERANCE = 1e-4
# Locating a difference once the logits differ: allowed variants compute the very same
# numbers, so the first stage that differs beyond float32 rounding is where the network departs.
LOCATE_TOLERANCE = 1e-6
BATCH = 1  # one image at the paper's size: 1000 logits to compare
BIAS_STD = 0.05

WORDS = {"conv": "convolution", "linear": "linear layer", "relu": "ReLU",
         "maxpool": "max-pool", "lrn": "local response normalisation",
         "adaptive_avgpool": "adaptive average pool", "flatten": "flatten", "dropout": "dropout",
         "activation": "another activation", "norm": "normalisation", "softmax": "softmax",
         "log_softmax": "log-softmax", "pad": "padding", "adaptive_maxpool": "adaptive max-pool"}
TOKENS = {"relu": "R", "maxpool": "P", "lrn": "N", "adaptive_avgpool": "A", "flatten": "F",
          "dropout": "D", "activation": "X", "norm": "B", "softmax": "S", "log_softmax": "L",
          "pad": "Z", "adaptive_maxpool": "M"}


@dataclass(frozen=True)
class Paper:
    """What the paper fixes beyond the layer table: pools, normalisation, feature-map side."""

    pool: tuple[int, int]  # kernel, stride
    pool_text: str
    pool_places: str
    pool_after: tuple[str, ...]
    lrn_after: tuple[str, ...]
    lrn_text: str
    side: int  # feature maps before fc1 are side x side


PAPERS = {
    "alexnet": Paper((3, 2), "AlexNet's pools are overlapping 3x3 windows with stride 2: "
                             "nn.MaxPool2d(kernel_size=3, stride=2)",
                     "after conv1, conv2 and conv5", ("conv1", "conv2", "conv5"),
                     ("conv1", "conv2"), "AlexNet normalises only after conv1 and conv2", 6),
    "vgg16": Paper((2, 2), "VGG16's pools are 2x2 windows with stride 2: "
                           "nn.MaxPool2d(kernel_size=2, stride=2)",
                   "one after each block of convolutions",
                   ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"), (),
                   "VGG16 has no local response normalisation", 7),
}


@dataclass(frozen=True)
class Stage:
    """One step of the network in canonical form."""

    kind: str  # conv, linear, relu, maxpool, lrn, adaptive_avgpool, flatten, dropout
    node: str  # the graph node that produced it (the last node of an LRN block)
    params: tuple = ()  # conv/linear: (weight name, bias name or None)
    config: tuple = ()  # per kind, as documented in stages()


class Departure(AssertionError):
    """The network departs from the paper; the message is for the student."""


# ----------------------------------------------------------------------------- graph helpers
def _kinds(graph: Graph) -> dict[str, str]:
    return {node.name: graph.kind(node.name) for node in graph.nodes}


DATA = ("tensor", "tuple")  # what a node computes as data (not a shape)


def _inputs(node: Node, kinds: dict[str, str]) -> list[Ref]:
    """The tensors a node reads (its input or other nodes' results; not shapes, not weights)."""
    return [ref for ref in node.refs()
            if ref.kind == "input" or (ref.kind == "node" and kinds[ref.name] in DATA)]


def _successors(graph: Graph) -> dict[str, list[Node]]:
    """Where each tensor (input "x" or node) flows to, as data."""
    kinds, found = _kinds(graph), {}
    for node in graph.nodes:
        if kinds[node.name] in DATA:
            for ref in _inputs(node, kinds):
                found.setdefault(ref.name, []).append(node)
    return found


def _live(graph: Graph) -> set[str]:
    """The nodes whose results the output depends on."""
    live = {graph.output.name}
    for node in reversed(graph.nodes):
        if node.name in live:
            live.update(ref.name for ref in node.refs() if ref.kind == "node")
    return live


def _ancestors(graph: Graph, name: str) -> set[str]:
    kinds, found = _kinds(graph), {name}
    for node in reversed(graph.nodes):
        if node.name in found:
            found.update(ref.name for ref in _inputs(node, kinds) if ref.kind == "node")
    return found


def _arg(node: Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return dict(node.kwargs).get(name, default)


def _where(node: Node, graph: Graph) -> str:
    """Where the student wrote the operation: `` (self.features.0 (nn.Conv2d), line ...)``."""
    return f" ({_located_at(node, graph)})"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, tuple) and len(value) in (1, 2) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return (value[0], value[-1])
    raise Departure(f"the {what} of a layer must be fixed numbers, found {value!r}")


def _relu_like(node: Node) -> bool:
    """max(x, 0) however it is spelt: relu, clamp_min(0), clamp(min=0), threshold(0, 0)."""
    op = IN_PLACE.get(node.op, node.op)
    if op == "aten.relu.default":
        return True
    if op in ("aten.clamp_min.default", "aten.clamp.default"):
        low, high = _arg(node, 1, "min"), _arg(node, 2, "max")
        return _number(low) and low == 0 and high is None
    if op == "aten.threshold.default":
        threshold, value = _arg(node, 1, "threshold"), _arg(node, 2, "value")
        return _number(threshold) and _number(value) and threshold == 0 and value == 0
    return False


def _spec_for(graph: Graph, model_key: str | None) -> ModelSpec | None:
    """The given model's spec, or the one whose number of convolutions the graph has."""
    if model_key is not None:
        return get_spec(model_key)
    convs = sum(node.op in CONVS for node in graph.nodes)
    matching = [get_spec(key) for key in PAPERS
                if sum(layer.kind == "Conv2d" for layer in get_spec(key).layers) == convs]
    return matching[0] if matching else None


def _layer_name(kind: str, index: int, spec: ModelSpec | None) -> str:
    """The paper's name of the ``index``-th conv or linear layer (generic past the table)."""
    wanted = "Conv2d" if kind == "conv" else "Linear"
    names = [layer.name for layer in spec.layers if layer.kind == wanted] if spec else []
    if index < len(names):
        return names[index]
    return f"conv{index + 1}" if kind == "conv" else f"fc{index + 1}"


def _node_layer_names(graph: Graph, spec: ModelSpec | None) -> dict[str, str]:
    """conv/linear node name -> the paper's layer name, counting in graph order."""
    counts, names = {"conv": 0, "linear": 0}, {}
    for node in graph.nodes:
        if node.op in LAYER_OPS:
            kind = "conv" if node.op in CONVS else "linear"
            names[node.name] = _layer_name(kind, counts[kind], spec)
            counts[kind] += 1
    return names


def _class_name(spec: ModelSpec | None) -> str:
    return spec.class_name if spec else "the paper's network"


# ----------------------------------------------------------------------------- torchvision
def torchvision_modules(graph: Graph | Inventory) -> list[str]:
    """Module paths ("" = the model itself) whose classes come from torchvision.models."""
    return [path for path, classes in graph.modules
            if any(c.startswith("torchvision.models") for c in classes)]


# ----------------------------------------------------------------------------- stages
def _conv_config(node: Node, graph: Graph) -> tuple:
    """(stride, padding, dilation, groups); padding="same"/"valid" as the numbers they mean."""
    groups = _arg(node, 6, "groups", 1)
    if not isinstance(groups, int):
        raise Departure(f"the groups of a convolution must be a fixed number, found {groups!r}")
    stride = _pair(_arg(node, 3, "stride", 1), "stride")
    dilation = _pair(_arg(node, 5, "dilation", 1), "dilation")
    padding = _arg(node, 4, "padding", 0)
    if padding == "valid":
        padding = 0
    elif padding == "same":
        weight = _arg(node, 1, "weight")
        kernel = dict(graph.params).get(weight.name, ()) if isinstance(weight, Ref) else ()
        if len(kernel) != 4:
            raise Departure("a convolution with padding='same' must use its own weights")
        spans = [d * (k - 1) for d, k in zip(dilation, kernel[2:])]
        if any(span % 2 for span in spans):
            raise Departure(f"padding='same'{_where(node, graph)} pads unevenly for a "
                            f"{kernel[2]}x{kernel[3]} kernel; give the padding as numbers")
        padding = tuple(span // 2 for span in spans)
    return stride, _pair(padding, "padding"), dilation, groups


def _pad_config(node: Node) -> tuple[int, int] | None:
    """(rows, columns) of a symmetric zero padding of the last two dimensions, else None
    (``F.pad(x, (left, right))`` pads the columns only; zeros may follow for the other
    dimensions)."""
    pads = _arg(node, 1, "pad")
    mode = _arg(node, 2, "mode", "constant")
    value = _arg(node, 3, "value", 0) if node.op == "aten.pad.default" else _arg(node, 2,
                                                                                  "value", 0)
    if node.op == "aten.constant_pad_nd.default":
        mode = "constant"
    if not (isinstance(pads, tuple) and len(pads) in (2, 4, 6, 8) and all(
            isinstance(p, int) and not isinstance(p, bool) for p in pads)) or any(pads[4:]):
        return None
    left, right, top, bottom = (pads + (0, 0))[:4]
    if mode != "constant" or value not in (0, 0.0, None) or left != right or top != bottom:
        return None
    return top, left


def _pool_config(node: Node) -> tuple:
    """(kernel, stride, padding, dilation, ceil_mode) of a max-pool, defaults filled in."""
    kernel = _pair(_arg(node, 1, "kernel_size"), "kernel size")
    stride = _arg(node, 2, "stride", ())
    return (kernel, kernel if stride in ((), None) else _pair(stride, "stride"),
            _pair(_arg(node, 3, "padding", 0), "padding"),
            _pair(_arg(node, 4, "dilation", 1), "dilation"), bool(_arg(node, 5, "ceil_mode")))


def _is_batch(value: Any, graph: Graph) -> bool:
    """A reference to ``t.size(0)`` (the batch size, dynamic in the export)."""
    if not (isinstance(value, Ref) and value.kind == "node"):
        return False
    node = graph.node(value.name)
    return node.op == "aten.sym_size.int" and _arg(node, 1, "dim") == 0


def _is_flatten(node: Node, graph: Graph) -> bool:
    if node.op == "aten.flatten.using_ints":
        return _arg(node, 1, "start_dim", 0) == 1 and _arg(node, 2, "end_dim", -1) in (-1, 3)
    shape = _arg(node, 1, "size" if node.op == "aten.view.default" else "shape")
    if not (isinstance(shape, tuple) and len(shape) == 2):
        return False
    first, second = shape
    positive = isinstance(second, int) and not isinstance(second, bool) and second > 0
    return (_is_batch(first, graph) and (second == -1 or positive)) or (first == -1 and positive)


def _layer_stage(node: Node, graph: Graph) -> Stage:
    weight, bias = _arg(node, 1, "weight"), _arg(node, 2, "bias")
    if not (isinstance(weight, Ref) and weight.kind == "param"
            and (bias is None or (isinstance(bias, Ref) and bias.kind == "param"))):
        raise Departure("a convolution or linear layer must use its own weight and bias "
                        "parameters directly")
    params = (weight.name, bias.name if bias is not None else None)
    if node.op in CONVS:
        return Stage("conv", node.name, params, _conv_config(node, graph))
    return Stage("linear", node.name, params)


def _single_stage(node: Node, graph: Graph) -> Stage | None:
    """The stage of a one-input node; None if it is not one."""
    op = IN_PLACE.get(node.op, node.op)
    if op in LAYER_OPS:
        return _layer_stage(node, graph)
    if _relu_like(node):
        return Stage("relu", node.name)
    if op in MAX_POOLS:
        return Stage("maxpool", node.name, config=_pool_config(node))
    if op == "aten.adaptive_avg_pool2d.default":
        return Stage("adaptive_avgpool", node.name,
                     config=_pair(_arg(node, 1, "output_size"), "output size"))
    if op == "aten.adaptive_max_pool2d.default":
        # max and average agree wherever each output cell covers one input cell, as at the
        # papers' sizes (6x6 / 7x7 maps) and at the training sizes (1x1 maps); the
        # numbers are compared at the paper's size
        return Stage("adaptive_avgpool", node.name,
                     config=_pair(_arg(node, 1, "output_size"), "output size"))
    if op in DROPOUTS and _number(_arg(node, 1, "p")):
        return Stage("dropout", node.name, config=(_arg(node, 1, "p"),))
    if op in ACTIVATIONS:
        return Stage("activation", node.name, config=(op,))
    if op in NORMS:
        return Stage("norm", node.name, config=(op,))
    if op in ("aten.softmax.int", "aten._softmax.default"):
        return Stage("softmax", node.name)
    if op in ("aten.log_softmax.int", "aten._log_softmax.default") and _arg(
            node, 1, "dim") in (1, -1):
        return Stage("log_softmax", node.name)
    if op in PADS and _pad_config(node) is not None:
        return Stage("pad", node.name, config=_pad_config(node))
    if _is_flatten(node, graph):
        return Stage("flatten", node.name)
    return None


def _pool_output(graph: Graph, node: Node) -> bool:
    """``pool(x)[0]`` of a max-pool that also returns indices: the pooled maps."""
    if node.op != "getitem" or _arg(node, 1, "index") != 0:
        return False
    source = node.args[0] if node.args else None
    return isinstance(source, Ref) and source.kind == "node" and graph.node(
        source.name).op in MAX_POOLS + ("aten.adaptive_max_pool2d.default",)


def _merge_padding(chain: list[Stage]) -> list[Stage]:
    """A zero padding right before a convolution is that convolution's padding."""
    merged: list[Stage] = []
    for stage in chain:
        if stage.kind == "conv" and merged and merged[-1].kind == "pad":
            pad = merged.pop().config
            stride, padding, dilation, groups = stage.config
            stage = Stage("conv", stage.node, stage.params,
                          (stride, (padding[0] + pad[0], padding[1] + pad[1]), dilation, groups))
        merged.append(stage)
    return merged


def _lrn_stage(block: list[Node], current: Ref, kinds: dict[str, str]) -> Stage | None:
    """The LRN stage if ``block`` (from ``x * x`` on) is F.local_response_norm, else None."""
    block = block[:len(LRN_OPS) + 1]
    if len(block) <= len(LRN_OPS) or any(
            node.op not in ops for node, ops in zip(block[1:], LRN_OPS)):
        return None
    links = [_inputs(node, kinds) == [Ref("node", previous.name)]
             for previous, node in zip(block[:-2], block[1:-1])]
    *_, pool, _squeeze, _view, mul, add, power, div = block
    kernel = _arg(pool, 1, "kernel_size")
    scalars = [_arg(mul, 1, "other"), _arg(add, 1, "other"), _arg(power, 1, "exponent")]
    if not (all(links) and _inputs(div, kinds) == [current, Ref("node", power.name)]
            and isinstance(kernel, tuple) and isinstance(kernel[0], int)
            and all(_number(s) for s in scalars)):
        return None
    alpha, k, beta = scalars
    return Stage("lrn", div.name, config=(kernel[0], alpha, beta, k))


def _position(chain: list[Stage], spec: ModelSpec | None) -> str:
    """'after conv2' (the last layer so far) or 'before the first layer'."""
    layers = [s for s in chain if s.kind in ("conv", "linear")]
    if not layers:
        return "before the first layer"
    index = sum(s.kind == layers[-1].kind for s in layers) - 1
    return f"after {_layer_name(layers[-1].kind, index, spec)}"


def stages(graph: Graph, model_key: str | None = None) -> list[Stage]:
    """The network as one chain of stages from input to output; Departure if it is not one.

    Configs: conv (stride, padding, dilation, groups); maxpool (kernel, stride, padding,
    dilation, ceil_mode); lrn (size, alpha, beta, k); adaptive_avgpool the output size;
    dropout (p,). detach/clone/contiguous are skipped; results nobody uses are ignored.
    """
    spec, kinds, live = _spec_for(graph, model_key), _kinds(graph), _live(graph)
    nodes = [n for n in graph.nodes if n.name in live and kinds[n.name] in DATA]
    chain: list[Stage] = []
    current, index = Ref("input", "x"), 0
    while index < len(nodes):
        node, inputs = nodes[index], _inputs(nodes[index], kinds)
        where = _where(node, graph)
        passes = False
        if node.op == "aten.mul.Tensor" and inputs == [current, current]:
            stage = _lrn_stage(nodes[index:], current, kinds)
            index += len(LRN_OPS) if stage else 0
        elif inputs != [current]:
            raise Departure(
                f"{_position(chain, spec)}, forward() computes {operation(node)}"
                f"{where} from something other than the previous layer's output alone: "
                f"{_class_name(spec)} is a single chain of layers, each applied to the result "
                f"of the one before")
        else:
            passes = node.op in TRANSPARENT or _pool_output(graph, node)
            stage = None if passes else _single_stage(node, graph)
        if stage is None and not passes:
            raise Departure(f"{_position(chain, spec)}, forward() computes "
                            f"{operation(node)}{where}, which is not part of "
                            f"{_class_name(spec)}")
        if stage is not None and not (stage.kind == "flatten" and chain
                                      and chain[-1].kind == "flatten"):  # flat already
            chain.append(stage)
        current = Ref("node", nodes[index].name)
        index += 1
    return _merge_padding(chain)


# ----------------------------------------------------------------------------- data flow
def _unrectified_path(start: Node, graph: Graph, successors: dict[str, list[Node]]
                      ) -> list[Node] | None:
    """A path from ``start`` to the next conv/linear node or the output with no ReLU on it."""
    stack: list[list[Node]] = [[start]]
    seen: set[str] = set()
    while stack:
        path = stack.pop()
        last = path[-1]
        if last.name == graph.output.name or (len(path) > 1 and last.op in LAYER_OPS):
            return path
        for user in successors.get(last.name, []):
            if user.name not in seen and not _relu_like(user):
                seen.add(user.name)
                stack.append(path + [user])
    return None


def _op_word(node: Node, names: dict[str, str], graph: Graph) -> str:
    """A node in a path: the layer's name, a pool, or the operation and where it is."""
    if node.name in names:
        return names[node.name]
    if node.op in (*MAX_POOLS, AVG_POOL):
        return "max-pool" if node.op in MAX_POOLS else "average pool"
    return located(node, graph)


def nonlinearity_problem(graph: Graph, model_key: str | None = None) -> str | None:
    """Every conv/linear layer but the last must pass through a ReLU on every data path."""
    spec, successors = _spec_for(graph, model_key), _successors(graph)
    names = _node_layer_names(graph, spec)
    layers = [node for node in graph.nodes if node.op in LAYER_OPS]
    for layer in layers[:-1]:
        path = _unrectified_path(layer, graph, successors)
        if path is None:
            continue
        end = path[-1]
        target = names[end.name] if end.op in LAYER_OPS and end is not layer else "the output"
        route = " -> ".join(_op_word(node, names, graph) for node in path)
        return (f"{names[layer.name]}'s output reaches {target} without a ReLU: {route}. "
                f"{_class_name(spec)} puts a ReLU after every convolution and hidden linear "
                f"layer; note that F.relu(x) returns a new tensor, so write x = F.relu(x)")
    return None


def detach_problem(graph: Graph, model_key: str | None = None) -> str | None:
    """A detach between a parameter and the output stops the gradient: that is a problem."""
    kinds, live = _kinds(graph), _live(graph)
    trained: set[str] = set()
    for node in graph.nodes:
        if any(r.kind == "param" or r.name in trained for r in node.refs()) \
                and kinds[node.name] in DATA:
            trained.add(node.name)
    names = _node_layer_names(graph, _spec_for(graph, model_key))
    for node in graph.nodes:
        if node.op == DETACH and node.name in trained and node.name in live:
            ancestors = _ancestors(graph, node.name)
            upstream = [names[n] for n in names if n in ancestors]
            if not upstream:
                layer = next((names[u.name] for u in graph.users().get(node.name, [])
                              if u.name in names), "a layer")
                return (f"forward() detaches the weights of {layer}: no gradient reaches them, "
                        f"so they would never be trained. Remove the .detach() from forward()")
            cut = upstream[0] if len(upstream) == 1 else f"{upstream[0]} to {upstream[-1]}"
            return (f"forward() detaches the activations after {upstream[-1]}"
                    f"{_where(node, graph)}: no gradient flows back through .detach(), so "
                    f"{cut} would never be trained. Remove the .detach() from forward()")
    return None


def no_grad_problem(graph: Graph, model_key: str | None = None) -> str | None:
    """Layers that forward() computes, or reaches the output from, only with gradients
    off (``torch.no_grad()``, ``torch.set_grad_enabled(False)``): their weights get no
    gradient. The rebuild computes with gradients on, so this reads the recorded modes."""
    kinds = _kinds(graph)
    tracked: set[str] = set()  # results that carry a gradient back to a parameter
    for node in graph.nodes:
        if node.grad and kinds[node.name] in DATA and any(
                r.kind == "param" or r.name in tracked for r in node.refs()):
            tracked.add(node.name)
    reached = {graph.output.name} & tracked  # the gradient's way back from the output
    for node in reversed(graph.nodes):
        if node.name in reached:
            reached.update(r.name for r in node.refs() if r.name in tracked)
    names = _node_layer_names(graph, _spec_for(graph, model_key))
    untrained = [names[n] for n in names if n not in reached]
    live = _live(graph)
    off = next((node for node in graph.nodes if not node.grad and node.name in live), None)
    if not untrained or off is None:
        return None
    cut = untrained[0] if len(untrained) == 1 else f"{untrained[0]} to {untrained[-1]}"
    at = f"forward(), line `{off.line}`" if off.line else _located_at(off, graph)
    return (f"forward() computes with gradients switched off (torch.no_grad() or "
            f"torch.set_grad_enabled(False)) from {at}: no gradient reaches {cut}, which "
            f"would never be trained. Leave gradients on in forward(): evaluation switches "
            f"them off itself")


# ----------------------------------------------------------------------------- pooling
def _pool_text(config: tuple) -> str:
    (kh, kw), stride, padding, dilation, ceil_mode = config
    text = f"{kh}x{kw} with stride " + (f"{stride[0]}" if stride[0] == stride[1] else f"{stride}")
    text += f", padding {padding}" if padding != (0, 0) else ""
    text += f", dilation {dilation}" if dilation != (1, 1) else ""
    return text + (", ceil_mode=True" if ceil_mode else "")


def _paper_pool(paper: Paper) -> tuple:
    kernel, stride = paper.pool
    return (kernel, kernel), (stride, stride), (0, 0), (1, 1), False


def pool_inputs(graph: Graph) -> dict[str, tuple[int, int]]:
    """Each max-pool's input side (height, width), from a shapes-only run on the meta
    device; empty when the network cannot be rebuilt up to its pools."""
    pools = [n for n in graph.nodes if n.op in MAX_POOLS]
    net, record = Rebuilt(graph, device="meta"), {}
    x = torch.zeros(1, graph.in_channels, graph.size, graph.size, device="meta")
    try:
        net(x, record, targets=[n.name for n in pools])
    except (NotRebuildable, RuntimeError):
        return {}
    sides = {}
    for node in pools:
        source = node.args[0]
        value = x if source == Ref("input", "x") else record.get(source.name)
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            sides[node.name] = (int(value.shape[-2]), int(value.shape[-1]))
    return sides


def _same_in_floor_mode(config: tuple, side: tuple[int, int] | None) -> bool:
    """Whether ceil_mode=True computes what floor mode does on this input (every window
    fits exactly: (side - kernel) divisible by the stride)."""
    (kh, kw), (sh, sw), padding, dilation, _ceil = config
    return side is not None and padding == (0, 0) and dilation == (1, 1) \
        and (side[0] - kh) % sh == 0 and (side[1] - kw) % sw == 0


def _max_pool_problem(index: int, node: Node, paper: Paper, graph: Graph,
                      sides: dict[str, tuple[int, int]]) -> str | None:
    if node.op == AVG_POOL:
        return (f"pool {index}{_where(node, graph)} is an average pool (nn.AvgPool2d / "
                f"F.avg_pool2d); {paper.pool_text}")
    config = _pool_config(node)
    if config[4] and _same_in_floor_mode(config, sides.get(node.name)):
        config = (*config[:4], False)  # ceil_mode changes nothing on this input
    if config != _paper_pool(paper):
        return (f"max-pool {index}{_where(node, graph)} is {_pool_text(config)}; "
                f"{paper.pool_text}")
    return None


def pooling_problem(graph: Graph, model_key: str) -> str | None:
    """The paper's number of max-pools, each with the paper's window and stride."""
    spec, paper, live = get_spec(model_key), PAPERS[get_spec(model_key).key], _live(graph)
    pools = [n for n in graph.nodes if n.name in live and n.op in (*MAX_POOLS, AVG_POOL)]
    sides = pool_inputs(graph)
    try:
        for index, node in enumerate(pools, 1):
            problem = _max_pool_problem(index, node, paper, graph, sides)
            if problem:
                return problem
    except Departure as departure:
        return str(departure)
    if len(pools) != len(spec.pool_shapes):
        return (f"forward() uses {len(pools)} max-pools; {spec.class_name} has "
                f"{len(spec.pool_shapes)} ({paper.pool_places})")
    return None


# ----------------------------------------------------------------------------- the paper
def _tail_rule(layer: Layer, paper: Paper, last_conv: str, last: str) -> tuple[str, str]:
    """(regex over stage tokens, words) for what may follow ``layer`` up to the next layer."""
    name = layer.name
    if name == last:
        return "L?", ("nothing: its output is the network's output, the logits (a log-softmax "
                      "over the classes is accepted: nn.CrossEntropyLoss gives it the same loss)")
    if layer.kind == "Linear":
        return "D*RD*", "a ReLU (dropout before or after it is optional)"
    pooled = "(RP|PR)" if name not in paper.lrn_after else "(RN?P|RPN?|PRN?)"
    lrn = (" (a local response normalisation after the ReLU, before or after the pool, is "
           "optional)") if name in paper.lrn_after else ""
    if name == last_conv:
        return (pooled + "D*(AD*)?FD*",
                f"a ReLU and the last max-pool, then the flatten before fc1 (an "
                f"nn.AdaptiveAvgPool2d(({paper.side}, {paper.side})) before the flatten and "
                f"dropout are optional)")
    if name in paper.pool_after:
        return pooled, f"a ReLU and a max-pool{lrn}"
    return "R", "a ReLU"


def _layer_problem(stage: Stage, layer: Layer, graph: Graph, seen: dict[str, str]) -> str | None:
    """How a conv/linear stage departs from the paper's ``layer``, or None."""
    where = _where(graph.node(stage.node), graph)
    expected = f"the paper's {layer.name} is {layer.describe()}"
    if (stage.kind == "conv") != (layer.kind == "Conv2d"):
        found = "a convolution" if stage.kind == "conv" else "a linear layer"
        return f"forward() applies {found}{where} where {expected}"
    weight, bias = stage.params
    if weight in seen:
        return (f"{layer.name}{where} reuses the weights of {seen[weight]}: each layer needs "
                f"its own nn.Conv2d / nn.Linear")
    seen[weight] = layer.name
    if bias is None:
        return f"{layer.name}{where} has no bias; {expected} (bias=True is the default)"
    shape = dict(graph.params)[weight]
    if shape != layer.weight_shape:
        return f"{layer.name}{where} has weights of shape {tuple(shape)}; {expected}"
    if stage.kind == "conv" and stage.config != (
            (layer.stride,) * 2, (layer.padding,) * 2, (1, 1), 1):
        stride, padding, dilation, groups = stage.config
        extra = "".join([f", dilation {dilation}" if dilation != (1, 1) else "",
                         f", groups {groups}" if groups != 1 else ""])
        return (f"{layer.name}{where} has stride {stride[0] if stride[0] == stride[1] else stride}"
                f" and padding {padding[0] if padding[0] == padding[1] else padding}{extra}; "
                f"{expected}")
    return None


def _groups(chain: list[Stage]) -> tuple[list[Stage], list[tuple[Stage, list[Stage]]]]:
    """(stages before the first layer, [(layer stage, the stages up to the next layer)])."""
    head: list[Stage] = []
    groups: list[tuple[Stage, list[Stage]]] = []
    for stage in chain:
        if stage.kind in ("conv", "linear"):
            groups.append((stage, []))
        else:
            (groups[-1][1] if groups else head).append(stage)
    return head, groups


OFF_PAPER = ("activation", "norm", "softmax", "log_softmax", "pad", "adaptive_maxpool")


def _stage_words(stage: Stage, graph: Graph) -> str:
    """A stage in words; one the paper does not have also says where it is written."""
    if stage.kind in OFF_PAPER:
        return located(graph.node(stage.node), graph)
    return WORDS[stage.kind]


def _tail_problem(name: str, tail: list[Stage], rule: tuple[str, str], graph: Graph,
                  paper: Paper, pools: list[Stage], sides: dict[str, tuple[int, int]],
                  following: Stage | None) -> str | None:
    """What follows layer ``name`` up to the ``following`` layer (None: the output)."""
    pattern, expected = rule
    tokens = "".join(TOKENS[s.kind] for s in tail)
    if not re.fullmatch(pattern, tokens):
        found = "has: " + (", ".join(_stage_words(s, graph) for s in tail) or "nothing")
        if not tail and following is not None:  # name the layer the student put next
            found = (f"has nothing before its next {WORDS[following.kind]}, "
                     f"{_located_at(graph.node(following.node), graph)}")
        hint = ""
        if "S" in tokens:
            hint = (" (return the raw scores: nn.CrossEntropyLoss applies the softmax itself, "
                    "and a softmax before it changes what the network learns)")
        elif "R" in pattern and "R" not in tokens:
            hint = " (F.relu(x) returns a new tensor: write x = F.relu(x))"
        elif "N" in tokens and "N" not in pattern:
            hint = f" ({paper.lrn_text})"
        return f"after {name}, the paper has {expected}; your network {found}{hint}"
    for stage in tail:
        if stage.kind == "maxpool":
            pools.append(stage)
            problem = _max_pool_problem(len(pools), graph.node(stage.node), paper, graph, sides)
            if problem:
                return problem
        if stage.kind == "adaptive_avgpool" and stage.config != (paper.side, paper.side):
            return (f"the adaptive average pool after {name} gives {stage.config[0]}x"
                    f"{stage.config[1]} feature maps; the paper's are {paper.side}x{paper.side}"
                    f" there: nn.AdaptiveAvgPool2d(({paper.side}, {paper.side}))")
    return None


def paper_problem(graph: Graph, model_key: str) -> str | None:
    """How the network's chain of stages departs from the paper (allowed variants pass)."""
    spec = get_spec(model_key)
    paper, layers = PAPERS[spec.key], spec.resolved(graph.in_channels, graph.num_classes)
    try:
        head, groups = _groups(stages(graph, model_key))
        if head:
            return (f"before {layers[0].name}, forward() applies "
                    f"{', '.join(_stage_words(s, graph) for s in head)}; the paper's network "
                    f"starts with {layers[0].name}")
        sides = pool_inputs(graph)
        last_conv = [layer.name for layer in layers if layer.kind == "Conv2d"][-1]
        seen: dict[str, str] = {}
        pools: list[Stage] = []
        for index, ((stage, tail), layer) in enumerate(zip(groups, layers)):
            following = groups[index + 1][0] if index + 1 < len(groups) else None
            problem = _layer_problem(stage, layer, graph, seen) or _tail_problem(
                layer.name, tail, _tail_rule(layer, paper, last_conv, layers[-1].name),
                graph, paper, pools, sides, following)
            if problem:
                return problem
    except Departure as departure:
        return str(departure)
    if len(groups) > len(layers):
        extra = graph.node(groups[len(layers)][0].node)
        return (f"after {layers[-1].name}, forward() applies another "
                f"{WORDS[groups[len(layers)][0].kind]}{_where(extra, graph)}; "
                f"{spec.class_name} ends with {layers[-1].name}, whose output is the logits")
    if len(groups) < len(layers):
        missing = layers[len(groups)]
        return (f"forward() ends after {layers[len(groups) - 1].name if groups else 'its input'}"
                f"; the paper's network continues with {missing.name}: {missing.describe()}")
    return None


# ----------------------------------------------------------------------------- numerics
def _stage_labels(chain: list[Stage], spec: ModelSpec) -> list[str]:
    """A name for every stage: the layer's name, or what it is and where."""
    labels, counts, last, pools = [], {"conv": 0, "linear": 0}, "the input", 0
    for stage in chain:
        if stage.kind in counts:
            last = _layer_name(stage.kind, counts[stage.kind], spec)
            counts[stage.kind] += 1
            labels.append(last)
        elif stage.kind == "maxpool":
            pools += 1
            labels.append(f"max-pool {pools}")
        else:
            labels.append(f"the {WORDS[stage.kind]} after {last}")
    return labels


def _seed_weights(model: Rebuilt, chain: list[Stage], seed: int) -> torch.Tensor:
    """Deterministic weights for the layers of ``chain``; returns a matching input batch."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        parameter.zero_()
    for stage in chain:
        if stage.kind in ("conv", "linear"):
            weight, bias = (model.param(name) if name else None for name in stage.params)
            fan_out = weight.shape[0] * math.prod(weight.shape[2:])
            std = math.sqrt(2 / fan_out) if stage.kind == "conv" else 0.01
            weight.normal_(0, std, generator=generator)
            if bias is not None:
                bias.normal_(0, BIAS_STD, generator=generator)
    graph = model.graph
    return torch.randn(BATCH, graph.in_channels, graph.size, graph.size, generator=generator)


def _paper_values(chain: list[Stage], model: Rebuilt, x: torch.Tensor, spec: ModelSpec
                  ) -> Iterator[torch.Tensor]:
    """The paper's network, stage by stage, with the student's layer order and weights."""
    layers = iter(spec.resolved(model.graph.in_channels, model.graph.num_classes))
    kernel, stride = PAPERS[spec.key].pool
    for stage in chain:
        if stage.kind in ("conv", "linear"):
            layer = next(layers)
            weight, bias = (model.param(name) if name else None for name in stage.params)
            x = (F.conv2d(x, weight, bias, stride=layer.stride, padding=layer.padding)
                 if stage.kind == "conv" else F.linear(x, weight, bias))
        elif stage.kind == "relu":
            x = F.relu(x)
        elif stage.kind == "maxpool":
            x = F.max_pool2d(x, kernel, stride)
        elif stage.kind == "lrn":
            size, alpha, beta, k = stage.config
            x = F.local_response_norm(x, size, alpha, beta, k)
        elif stage.kind == "adaptive_avgpool":
            x = F.adaptive_avg_pool2d(x, stage.config)
        elif stage.kind == "flatten":
            x = torch.flatten(x, 1)
        elif stage.kind == "log_softmax":
            x = F.log_softmax(x, 1)
        yield x


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """CS231n's relative error, per element; logits below a thousandth of the largest one
    are measured against that floor, so that rounding on near-zero logits cannot fail
    code that only adds in another order."""
    floor = 1e-3 * float(torch.maximum(got.abs().max(), want.abs().max()).clamp_min(1e-8))
    scale = torch.maximum(got.abs(), want.abs()).clamp_min(floor)
    return float(((got - want).abs() / scale).max())


def _first_difference(chain: list[Stage], model: Rebuilt, x: torch.Tensor, spec: ModelSpec
                      ) -> str:
    """Which stage first computes something else than the paper's network."""
    record: dict[str, Any] = {}
    model(x, record)
    labels = _stage_labels(chain, spec)
    for stage, label, want in zip(chain, labels, _paper_values(chain, model, x, spec)):
        got = record[stage.node]
        got = got[0] if isinstance(got, tuple) else got
        if got.shape != want.shape:
            return (f"{label} gives a result of shape {tuple(got.shape)}, the paper's network "
                    f"{tuple(want.shape)} there")
        error = float((got - want).abs().max() / want.abs().max().clamp_min(1e-8))
        if error > LOCATE_TOLERANCE:
            return (f"{label} computes different numbers from the paper's network with the same "
                    f"weights (differences up to {error:.1e} of its largest value)")
    return "the logits differ from the paper's network with the same weights"


def equivalence_problem(graph: Graph, model_key: str, seed: int = 0) -> str | None:
    """Same weights, same input: the student's logits must be the paper network's."""
    problem = paper_problem(graph, model_key)
    if problem:
        return problem
    spec, chain = get_spec(model_key), stages(graph, model_key)
    model = Rebuilt(graph).eval()
    with torch.no_grad():
        x = _seed_weights(model, chain, seed)
        try:
            got = model(x)
        except RuntimeError as error:
            return (f"the network fails on a batch of {BATCH} images of {graph.in_channels}x"
                    f"{graph.size}x{graph.size}: {str(error).splitlines()[0][:200]}")
        *_, want = _paper_values(chain, model, x, spec)
        if got.shape == want.shape and _relative_error(got, want) <= TOLERANCE:
            return None
        return _first_difference(chain, model, x, spec)
