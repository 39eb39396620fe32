"""Runs INSIDE the grading sandbox: execute a submission's code cells, describe its networks.

Usage (by grader/describe.py, never by hand)::

    python describe_child.py JOB.json OUT.jsonl

JOB.json: ``{"cells": [source, ...], "models": [{"key", "class_name", "after_cell",
"configs": [{"in_channels", "num_classes", "size"}, ...]}, ...]}``. The cells run in
order in one IPython shell (magics work; the student's output goes to /dev/null). Right
after the cell ``after_cell`` of a model has run, the model is built for each
configuration on the meta device and exported with ``torch.export`` (training mode,
dynamic batch). One JSON object per line goes to OUT.jsonl:

* ``{"event": "cell", "index": i}`` before cell ``i`` runs and ``{"event": "describing",
  "key": k}`` before model ``k`` is built and exported (so a crash can be located);
* ``{"event": "model", "key": k, "configs": [description, ...]}`` or
  ``{"event": "model_error", "key": k, "message": "..."}``.

A description is plain data (no pickle): the parameters' names and shapes, every node
of the exported graph (op name, arguments as literals or references, output shape,
the module that called it) and the classes of the model's modules. The trusted side
(grader/netgraph) validates it and rebuilds the network with its own code; nothing
here is trusted, so nothing here needs to be tamper-proof.

This file imports no grader code: the grader folder is not visible in the sandbox.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

MAX_MESSAGE = 600


class Reporter:
    """Writes events to the output file, one JSON object per line, flushed at once."""

    def __init__(self, path: str) -> None:
        self.handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the run

    def __call__(self, **event: Any) -> None:
        self.handle.write(json.dumps(event) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())


def short(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + " ..."


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
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
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


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def describe_config(cls: type, in_channels: int, num_classes: int, size: int) -> dict:
    """Build ``cls`` on the meta device and describe its exported training-mode graph."""
    import torch
    from torch.export import Dim, export

    with torch.device("meta"):
        model = cls(in_channels=in_channels, num_classes=num_classes)
    model.train()
    example = torch.zeros(2, in_channels, size, size, device="meta")
    program = export(model, (example,), dynamic_shapes=({0: Dim("batch", min=1, max=4096)},),
                     strict=False)
    refs: dict[str, dict] = {}
    params: list[dict] = []
    inputs = 0
    for spec in program.graph_signature.input_specs:
        kind = spec.kind.name
        if kind == "PARAMETER":
            refs[spec.arg.name] = {"param": spec.target}
        elif kind == "USER_INPUT":
            refs[spec.arg.name] = {"input": inputs}
            inputs += 1
        else:  # buffers and lifted constants: their values would have to be trusted
            refs[spec.arg.name] = {"unsupported": f"{kind.lower()} {spec.target}"}
    state = dict(program.state_dict)
    for spec in program.graph_signature.input_specs:
        if spec.kind.name == "PARAMETER":
            params.append({"name": spec.target, "shape": list(state[spec.target].shape),
                           "requires_grad": bool(state[spec.target].requires_grad)})
    nodes, output = [], None
    for node in program.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            output = encode(node.args[0], refs)
            continue
        stack = list(node.meta.get("nn_module_stack", {}).values())
        module = stack[-1][0] if stack else ""
        nodes.append({"name": node.name, "kind": node.op,
                      "op": str(node.target) if node.op == "call_function" else node.op,
                      "args": encode(list(node.args), refs),
                      "kwargs": {k: encode(v, refs) for k, v in node.kwargs.items()},
                      "shape": shape_of(node), "module": module})
    modules = {name or "": [class_path(c) for c in type(m).__mro__ if c is not object]
               for name, m in model.named_modules()}
    return {"in_channels": in_channels, "num_classes": num_classes, "size": size,
            "params": params, "nodes": nodes, "output": output, "modules": modules}


def describe_model(namespace: dict, model: dict, cell_error: str | None) -> dict:
    """The ``model`` event for one model of the job (or its error)."""
    cls = namespace.get(model["class_name"])
    if not isinstance(cls, type):
        why = f"its cell raised {cell_error}" if cell_error else "its cell ran"
        return {"event": "model_error", "key": model["key"],
                "message": f"no class {model['class_name']} is defined after {why}"}
    configs = []
    for config in model["configs"]:
        try:
            configs.append(describe_config(cls, config["in_channels"], config["num_classes"],
                                           config["size"]))
        except BaseException as error:  # noqa: BLE001 - any failure is the student's to see
            call = (f"{model['class_name']}(in_channels={config['in_channels']}, "
                    f"num_classes={config['num_classes']})")
            return {"event": "model_error", "key": model["key"],
                    "message": f"{call} on a batch of {config['size']}x{config['size']} "
                               f"images: {short(error)}"}
    return {"event": "model", "key": model["key"], "configs": configs}


def main(job_path: str, out_path: str) -> int:
    with open(job_path, encoding="utf-8") as handle:
        job = json.load(handle)
    report = Reporter(out_path)
    silence_student_output()
    os.environ.setdefault("MPLBACKEND", "Agg")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    due = {}
    for model in job["models"]:
        due.setdefault(model["after_cell"], []).append(model)
    for index, source in enumerate(job["cells"]):
        report(event="cell", index=index)
        error = None
        try:
            result = shell.run_cell(source, store_history=False, silent=True)
            failure = result.error_before_exec or result.error_in_exec
            error = short(failure) if failure is not None else None
        except BaseException as exit_:  # noqa: BLE001 - SystemExit, KeyboardInterrupt
            error = short(exit_)
        for model in due.get(index, []):
            report(event="describing", key=model["key"])
            report(**describe_model(shell.user_ns, model, error))
    report(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
