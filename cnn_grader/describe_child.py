"""Runs INSIDE the grading sandbox: execute a submission's code cells, describe its networks.

Usage (by cnn_grader/describe.py, never by hand)::

    python describe_child.py JOB.json OUT.jsonl

JOB.json: ``{"cells": [source, ...], "cell_seconds": s, "models": [{"key", "class_name",
"after_cell", "configs": [{"in_channels", "num_classes", "size"}, ...]}, ...]}``. The
cells run in order in one IPython shell (magics work; the student's output goes to
/dev/null), each interrupted as a Jupyter kernel interrupts it (KeyboardInterrupt) after
``cell_seconds``: what it defined before stays, the next cell runs (building and tracing
a model gets ``cell_seconds + TRACING_SECONDS`` a step). Right after the cell
``after_cell`` of a model has run, the model is built on the meta device for each
(in_channels, num_classes) and exported with ``torch.export`` (training mode, dynamic
batch) for each configuration. One JSON object per line goes to OUT.jsonl:

* ``{"event": "cell", "index": i}`` before cell ``i`` runs and ``{"event": "describing",
  "key": k}`` before model ``k`` is built and exported (so a crash can be located);
* ``{"event": "inventory", "key": k, "inventories": [...]}``: per (in_channels,
  num_classes) the modules and parameters the constructor built, known without forward();
* ``{"event": "config", "key": k, "config": {...}}``: per configuration a description,
  or ``{"error": ...}`` (a network that cannot run at one size keeps its other ones);
* ``{"event": "model", "key": k}`` when the model is done, or ``{"event": "model_error",
  "key": k, "message": "..."}`` when no class is defined or its constructor fails.

A description is plain data (no pickle): the parameters' and buffers' names and shapes,
every node of the exported graph (op name, arguments as literals or references, output
shape, the module that called it, the student's line; a region with gradients switched
off or on, as ``torch.no_grad()`` makes one, in line between two ``set_grad_enabled``
markers), what forward() returns (``returns``: one tensor, or a tuple of values), the
lines where a dropout stays on in eval mode (``drops_in_eval``) or that compute in
``torch.inference_mode()`` (``inference_mode``), and the classes of the
model's modules. The trusted side
(cnn_grader/netgraph) validates it and rebuilds the network with its own code; nothing
here is trusted, so nothing here needs to be tamper-proof.

This file imports no grader code: the grader folder is not visible in the sandbox.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterator

MAX_MESSAGE = 600
TRACING_SECONDS = 20  # allowance for torch.export on top of the cell limit, per step


class Reporter:
    """Writes events to the output file, one JSON object per line, flushed at once."""

    def __init__(self, path: str) -> None:
        self.handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the run

    def __call__(self, **event: Any) -> None:
        self.handle.write(json.dumps(event) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())


class CellTimeout(KeyboardInterrupt):
    """Raised in the main thread when a cell runs past its limit, as a kernel interrupt."""


STUB_HINT = ("the cell is not finished: replace `raise NotImplementedError()` with your code")


def student_frame(trace: list[tuple[str, int, str]]) -> str:
    """'line N: code' of the last frame that is the student's (not torch, not this file)."""
    mine = [(line, code) for filename, line, code in trace
            if "/torch/" not in filename and not filename.endswith("describe_child.py")
            and "/site-packages/" not in filename and "/IPython/" not in filename]
    if not mine:
        return ""
    line, code = mine[-1]
    return f" (line {line}: `{code.strip()[:120]}`)" if code.strip() else f" (line {line})"


def short(error: BaseException) -> str:
    """``Type: message`` of an error, with the student's line where the traceback has one."""
    import traceback

    if isinstance(error, CellTimeout):
        text = "KeyboardInterrupt: the code ran past its time limit and was interrupted"
    elif isinstance(error, NotImplementedError) and not str(error).strip():
        text = f"NotImplementedError: {STUB_HINT}"
    elif isinstance(error, NotImplementedError) and "missing the required \"forward\"" in str(error):
        text = ("the class has no forward() method: check its name and indentation "
                "(def forward(self, x): inside the class)")
    else:
        text = f"{type(error).__name__}: {error}"
    frames = [(f.filename, f.lineno or 0, f.line or "")
              for f in traceback.extract_tb(error.__traceback__)]
    text = text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + " ..."
    return text + student_frame(frames)


def silence_student_output() -> None:
    """Point fd 1 and 2 at /dev/null: prints and warnings must not reach the grader."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def encode(value: Any, refs: dict[str, dict]) -> Any:
    """A node argument as JSON: references to nodes/parameters/the input, or literals."""
    import torch
    from torch import fx

    if isinstance(value, fx.Node):
        return refs.get(value.name, {"node": value.name})
    if isinstance(value, (list, tuple)):
        return [encode(v, refs) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:40]
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, (torch.device, torch.memory_format, torch.layout)):
        return {"other": str(value)}
    return {"unsupported": type(value).__name__}


def shape_of(node: Any) -> list[int | None] | None:
    """The node's output shape, with None for the (dynamic) batch dimension."""
    value = node.meta.get("val")
    if not hasattr(value, "shape"):
        return None
    return [int(s) if isinstance(s, int) or str(s).isdigit() else None for s in value.shape]


def source_line(node: Any) -> str:
    """The student's line that produced ``node``, from export's stack trace."""
    trace = node.meta.get("stack_trace") or ""
    frames, lines = [], trace.splitlines()
    for index, text in enumerate(lines):
        text = text.strip()
        if text.startswith("File \"") and ", line " in text:
            filename = text[6:text.index("\", line ")]
            number = text.split(", line ")[1].split(",")[0]
            following = lines[index + 1].strip() if index + 1 < len(lines) else ""
            code = "" if following.startswith("File \"") else following
            frames.append((filename, int(number) if number.isdigit() else 0, code))
    return _code(student_frame(frames))


def _code(found: str) -> str:
    """The code of ``student_frame``'s answer (" (line N: `code`)" -> "code")."""
    return found[found.find("`") + 1:found.rfind("`")] if "`" in found else ""


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def inventory(model: Any) -> dict:
    """What the constructor built, known without a forward pass: modules and parameters."""
    return {"modules": {name or "": [class_path(c) for c in type(m).__mro__ if c is not object]
                        for name, m in model.named_modules()},
            "params": [{"name": name, "shape": list(p.shape), "requires_grad": p.requires_grad}
                       for name, p in model.named_parameters()]}


def build(cls: type, in_channels: int, num_classes: int) -> Any:
    """``cls(in_channels=..., num_classes=...)`` on the meta device."""
    import torch

    with torch.device("meta"):
        return cls(in_channels=in_channels, num_classes=num_classes)


BATCHES = (2, 3)  # the fixed batch sizes of the second try (see fixed_batch_description)
BATCH_NODE = "batch_size_of_input"


def export_description(model: Any, in_channels: int, num_classes: int, size: int) -> dict:
    """Describe the exported training-mode graph of ``model`` on ``size`` x ``size`` images."""
    import torch
    from torch._dynamo.exc import UserError, UserErrorType
    from torch.export import Dim, export

    model.train()
    example = torch.zeros(BATCHES[0], in_channels, size, size, device="meta")
    model(example)  # the student's own errors first, with their line
    try:
        program = export(model, (example,),
                         dynamic_shapes=({0: Dim("batch", min=1, max=4096)},), strict=False)
    except UserError as error:
        if error.error_type is not UserErrorType.CONSTRAINT_VIOLATION:
            raise
        description = fixed_batch_description(model, in_channels, num_classes, size)
    else:
        description = describe_program(program, model, in_channels, num_classes, size)
    return {**description, "drops_in_eval": eval_dropouts(model, example),
            "inference_mode": inference_mode_lines(model, example)}


MAX_EVAL_LINES = 16


def eval_dropouts(model: Any, example: Any) -> list[str]:
    """The student's lines where a dropout stays on in eval mode (``F.dropout(x, 0.5)``,
    whose ``training`` defaults to True): one shapes-only forward of ``model.eval()``
    records every dropout called with ``training=True``. The exported graph cannot tell
    (export runs in training mode, where every dropout is on). A forward that raises in
    eval mode records nothing here: the grader grades its rebuild, whose dropouts follow
    the rebuild's own mode."""
    import inspect

    import torch
    import torch.nn.functional as F

    functional = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                  F.feature_alpha_dropout}
    native = {getattr(torch, f"{name}{form}") for form in ("", "_") for name in (
        "dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout")}

    def stays_on(func: Any, args: tuple, kwargs: dict) -> bool:
        if func in functional:
            bound = inspect.signature(func).bind(*args, **kwargs)
            bound.apply_defaults()
            return bound.arguments["training"] is True
        return func in native and (args[2] if len(args) > 2 else kwargs.get("train")) is True

    model.eval()
    try:
        return lines_where(model, example, stays_on)
    finally:
        model.train()


def inference_mode_lines(model: Any, example: Any) -> list[str]:
    """The student's lines that compute in ``torch.inference_mode()`` during a
    shapes-only forward of the model in training mode. Export leaves no trace of that
    mode, and no gradient can flow through what it computes. A forward that raises here
    records nothing (the export above ran it already)."""
    import torch

    with torch.inference_mode(False):
        return lines_where(model, example,
                           lambda func, args, kwargs: torch.is_inference_mode_enabled())


def lines_where(model: Any, example: Any, wanted: Any) -> list[str]:
    """The student's lines (at most MAX_EVAL_LINES, each once) of the operations of one
    forward of ``model`` on ``example`` for which ``wanted(func, args, kwargs)`` is true;
    none when the forward raises."""
    import traceback

    from torch.overrides import TorchFunctionMode

    lines: list[str] = []

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                               kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            if len(lines) < MAX_EVAL_LINES and wanted(func, args, kwargs):
                frames = [(f.filename, f.lineno or 0, f.line or "")
                          for f in traceback.extract_stack()]
                line = _code(student_frame(frames))
                if line not in lines:
                    lines.append(line)
            return func(*args, **kwargs)

    try:
        with Watch():
            model(example)
    except Exception:  # noqa: BLE001 - the callers' docstrings say why
        return []
    return lines


def fixed_batch_description(model: Any, in_channels: int, num_classes: int, size: int) -> dict:
    """The description of a forward() that reads the batch size as a Python number
    (``len(x)``, ``int(x.size(0))``), which a dynamic-batch export cannot follow.

    It is exported at two fixed batch sizes; where the two graphs differ only by those
    sizes, the number is the batch size and becomes a reference to it. Any other
    difference means the computation itself depends on the batch, which is refused."""
    import torch
    from torch.export import export

    def at(batch: int) -> dict:
        example = torch.zeros(batch, in_channels, size, size, device="meta")
        return describe_program(export(model, (example,), strict=False), model, in_channels,
                                num_classes, size)

    first, second = at(BATCHES[0]), at(BATCHES[1])
    names = {node["name"] for node in first["nodes"]}
    name = BATCH_NODE
    while name in names:
        name += "_"
    batch = {"node": name}
    if len(first["nodes"]) != len(second["nodes"]):
        raise ValueError(batch_problem(next(
            (a for a, b in zip(first["nodes"], second["nodes"]) if a["op"] != b["op"]),
            first["nodes"][-1] if first["nodes"] else {})))
    nodes = [{"name": name, "kind": "call_function", "op": "aten.sym_size.int",
              "args": [{"input": 0}, 0], "kwargs": {}, "shape": None, "module": "",
              "line": ""}]
    for a, b in zip(first["nodes"], second["nodes"]):  # shapes (messages only) may differ
        nodes.append({**merge_batch({**a, "shape": None}, {**b, "shape": None}, batch, a),
                      "shape": _merge_shape(a["shape"], b["shape"])})
    return {**merge_batch({**first, "nodes": []}, {**second, "nodes": []}, batch, {}),
            "nodes": nodes}


def batch_problem(node: dict) -> str:
    where = f" (line: `{node['line']}`)" if node.get("line") else ""
    return ("forward() computes something different for a batch of 2 images than for a "
            f"batch of 3{where}: the network must treat every image of a batch alike; "
            "read the batch size with x.size(0) or flatten with torch.flatten(x, 1)")


def merge_batch(a: Any, b: Any, batch: dict, node: dict) -> Any:
    """``a`` (exported at the first batch size) with the first and second batch sizes,
    where they stand at the same place of ``b``, replaced by ``batch``."""
    if a == b and type(a) is type(b):
        return a
    if type(a) is int and type(b) is int and (a, b) == BATCHES:
        return batch
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return {key: merge_batch(a[key], b[key], batch, node) for key in a}
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [merge_batch(x, y, batch, node) for x, y in zip(a, b)]
    raise ValueError(batch_problem(node))


def _merge_shape(a: list | None, b: list | None) -> list | None:
    if a is None or b is None or len(a) != len(b):
        return None
    return [x if x == y else None for x, y in zip(a, b)]


def describe_program(program: Any, model: Any, in_channels: int, num_classes: int,
                     size: int) -> dict:
    """The plain-data description of an exported program (see the module docstring)."""
    refs: dict[str, dict] = {}
    inputs = 0
    state = dict(program.state_dict)
    params, buffers = [], []
    for spec in program.graph_signature.input_specs:
        kind = spec.kind.name
        if kind == "PARAMETER":
            refs[spec.arg.name] = {"param": spec.target}
            params.append({"name": spec.target, "shape": list(state[spec.target].shape),
                           "requires_grad": bool(state[spec.target].requires_grad)})
        elif kind == "BUFFER":
            refs[spec.arg.name] = {"buffer": spec.target}
            value = state.get(spec.target, getattr(program, "constants", {}).get(spec.target))
            buffers.append({"name": spec.target,
                            "shape": list(value.shape) if hasattr(value, "shape") else []})
        elif kind == "USER_INPUT":
            refs[spec.arg.name] = {"input": inputs}
            inputs += 1
        else:  # lifted constants: their values would have to be trusted
            refs[spec.arg.name] = {"unsupported": f"{kind.lower()} {spec.target}"}
    nodes: list[dict] = []
    output = describe_nodes(program.graph_module, program.graph, refs, nodes, set(), True)
    return {"in_channels": in_channels, "num_classes": num_classes, "size": size,
            "params": params, "buffers": buffers, "nodes": nodes, "output": output,
            "returns": returned(program.call_spec.out_spec),
            "modules": inventory(model)["modules"]}


GRAD_MODE = "set_grad_enabled"  # a marker node: gradients on or off (args: [bool]) from here


def _grad_region(node: Any) -> bool:
    """A call of a submodule's graph with gradients switched on or off: how export writes
    ``torch.no_grad()``, ``torch.set_grad_enabled(...)`` (a decorator or a with block)."""
    import torch

    return node.op == "call_function" and node.target is getattr(
        torch.ops.higher_order, "wrap_with_set_grad_enabled", None)


def _unique(name: str, taken: set[str]) -> str:
    unique, count = name, 0
    while unique in taken:
        count += 1
        unique = f"{name}_{count}"
    taken.add(unique)
    return unique


def _grad_marker(taken: set[str], enabled: Any) -> dict:
    return {"name": _unique(GRAD_MODE, taken), "kind": "call_function", "op": GRAD_MODE,
            "args": [enabled], "kwargs": {}, "shape": None, "module": "", "line": ""}


def describe_nodes(module: Any, graph: Any, refs: dict[str, Any], nodes: list[dict],
                   taken: set[str], grad: bool) -> Any:
    """Append the description of ``graph``'s operations to ``nodes`` and return its
    encoded output. A region with gradients switched (``_grad_region``) is written in
    line, between a ``GRAD_MODE`` marker with its mode and one with ``grad``, the mode
    around it; its nodes are renamed where their names are taken."""
    from torch import fx

    regions: dict[str, Any] = {}  # region call -> its encoded outputs
    output = None
    for node in graph.nodes:
        if node.op == "placeholder" or (node.op == "get_attr" and node.users
                                        and all(_grad_region(u) for u in node.users)):
            continue
        if node.op == "output":
            output = encode(node.args[0], refs)
            continue
        if _grad_region(node):
            enabled, body, *inputs = node.args
            sub = getattr(module, body.target)
            inner = {p.name: encode(v, refs) for p, v in zip(
                [n for n in sub.graph.nodes if n.op == "placeholder"], inputs)}
            nodes.append(_grad_marker(taken, encode(enabled, refs)))
            regions[node.name] = describe_nodes(sub, sub.graph, inner, nodes, taken,
                                                enabled is not False)
            nodes.append(_grad_marker(taken, grad))
            continue
        target = node.target
        getitem = node.op == "call_function" and getattr(target, "__name__", "") == "getitem"
        if getitem and isinstance(node.args[0], fx.Node) and node.args[0].name in regions:
            refs[node.name] = regions[node.args[0].name][node.args[1]]
            continue
        name = _unique(node.name, taken)
        stack = list(node.meta.get("nn_module_stack", {}).values())
        nodes.append({"name": name, "kind": node.op,
                      "op": ("getitem" if getitem else str(target))
                      if node.op == "call_function" else node.op,
                      "args": encode(list(node.args), refs),
                      "kwargs": {k: encode(v, refs) for k, v in node.kwargs.items()},
                      "shape": shape_of(node), "module": stack[-1][0] if stack else "",
                      "line": source_line(node)})
        refs[node.name] = {"node": name}
    return output


def returned(spec: Any) -> str:
    """What forward() returns, from export's output spec: "tensor" (one value), "tuple" (a
    tuple or list whose first value is one tensor, then other values) or "other"."""
    import collections

    if spec.is_leaf():
        return "tensor"
    if spec.type in (tuple, list, collections.namedtuple) and spec.num_children \
            and spec.child(0).is_leaf():
        return "tuple"
    return "other"


def describe_config(cls: type, in_channels: int, num_classes: int, size: int) -> dict:
    """Build ``cls`` on the meta device and describe its exported training-mode graph."""
    return export_description(build(cls, in_channels, num_classes), in_channels, num_classes,
                              size)


def _call(name: str, in_channels: int, num_classes: int) -> str:
    return f"{name}(in_channels={in_channels}, num_classes={num_classes})"


def _unlimited(action: Any) -> Any:
    return action()


def describe_events(cls: type, model: dict, limit: Any = _unlimited) -> Iterator[dict]:
    """The events that describe one class, as soon as each is known: ``inventory`` (per
    (in_channels, num_classes) what its constructor built), one ``config`` per
    configuration (its description, or why there is none), then ``model``. Only a
    constructor that fails stops the model (``model_error``). ``limit(action)`` runs
    each step under the cell time limit; after a step that ran past it, the remaining
    configurations are not tried (they would hang too) and share its message."""
    key, name = model["key"], model["class_name"]
    inventories, built = [], {}
    for config in model["configs"]:
        pair = (config["in_channels"], config["num_classes"])
        if pair in built:
            continue
        try:
            built[pair] = limit(lambda: build(cls, *pair))
        except BaseException as error:  # noqa: BLE001 - any failure is the student's to see
            yield {"event": "model_error", "key": key,
                   "message": f"building {_call(name, *pair)} raised {short(error)}"}
            return
        inventories.append({"in_channels": pair[0], "num_classes": pair[1],
                            **inventory(built[pair])})
    yield {"event": "inventory", "key": key, "inventories": inventories}
    stuck = None
    for config in model["configs"]:
        pair, size = (config["in_channels"], config["num_classes"]), config["size"]
        call = f"{_call(name, *pair)} on a batch of {size}x{size} images"
        if stuck:
            data = {"error": f"{call}: not tried, {stuck}"}
        else:
            try:
                data = limit(lambda: export_description(built[pair], *pair, size))
            except CellTimeout:
                stuck = "running forward() in training mode did not finish in time"
                data = {"error": f"{call}: {stuck}"}
            except BaseException as error:  # noqa: BLE001
                data = {"error": f"{call}: {short(error)}"}
        yield {"event": "config", "key": key,
               "config": {"in_channels": pair[0], "num_classes": pair[1], "size": size, **data}}
    yield {"event": "model", "key": key}


def describe_class(cls: type, model: dict) -> dict:
    """All of ``describe_events`` in one ``model`` event (tests and calibration)."""
    result: dict = {"event": "model", "key": model["key"], "inventories": [], "configs": []}
    for event in describe_events(cls, model):
        if event["event"] == "model_error":
            return event
        if event["event"] == "inventory":
            result["inventories"] = event["inventories"]
        elif event["event"] == "config":
            result["configs"].append(event["config"])
    return result


def describe_model(namespace: dict, model: dict, cell_error: str | None,
                   limit: Any = _unlimited) -> Iterator[dict]:
    """The events of one model of the job (or why there is no class)."""
    cls = namespace.get(model["class_name"])
    if not isinstance(cls, type):
        name = model["class_name"]
        why = f"it raised {cell_error}" if cell_error else "it ran without error"
        yield {"event": "model_error", "key": model["key"],
               "message": f"the {name} cell defines no class {name}: {why}"}
        return
    yield from describe_events(cls, model, limit)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise CellTimeout()


def run_limited(seconds: float, action: Any) -> Any:
    """``action()``, interrupted like a Jupyter kernel (KeyboardInterrupt) after ``seconds``."""
    import signal

    signal.signal(signal.SIGALRM, _interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)  # again each second, if caught
    try:
        return action()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(job_path: str, out_path: str) -> int:
    with open(job_path, encoding="utf-8") as handle:
        job = json.load(handle)
    sys.path[0] = os.getcwd()  # as in the kernel: modules handed in beside the notebook

    report = Reporter(out_path)
    silence_student_output()
    os.environ.setdefault("MPLBACKEND", "Agg")
    from IPython.core.interactiveshell import InteractiveShell

    import torch.export  # noqa: F401 - imported before the student's code, not on its time

    shell = InteractiveShell.instance()
    cell_seconds = float(job.get("cell_seconds", 30))
    due = {}
    for model in job["models"]:
        due.setdefault(model["after_cell"], []).append(model)
    for index, source in enumerate(job["cells"]):
        report(event="cell", index=index)
        error = None
        try:
            result = run_limited(cell_seconds, lambda: shell.run_cell(
                source, store_history=False, silent=True))
            failure = result.error_before_exec or result.error_in_exec
            error = short(failure) if failure is not None else None
        except BaseException as exit_:  # noqa: BLE001 - SystemExit, KeyboardInterrupt
            error = short(exit_)
        for model in due.get(index, []):
            report(event="describing", key=model["key"])
            for event in describe_model(shell.user_ns, model, error, lambda action: run_limited(
                    cell_seconds + TRACING_SECONDS, action)):
                report(**event)
    report(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
