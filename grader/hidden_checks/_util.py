"""Plumbing shared by the checks: silence, safe construction, honest parameter walks."""
from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .spec import ModelSpec


class CheckFailed(AssertionError):
    """A check found a problem; the message speaks to the student."""


def fail(message: str) -> None:
    """Raise a short, student-facing failure (no long chained traceback)."""
    raise CheckFailed(message)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No warnings, no progress bars, nothing on stderr.

    nbgrader gives a test cell zero points when it writes to stderr, even if it passes.
    """
    saved_env = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = saved_env or "autograde"  # silences cnn_course.fit
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        if saved_env is None:
            os.environ.pop("NBGRADER_EXECUTION", None)


def build(cls: type, spec: ModelSpec, in_channels: int, num_classes: int,
          device: str | torch.device = "cpu") -> nn.Module:
    """``cls(in_channels=..., num_classes=...)``, or a failure that says what went wrong."""
    call = f"{spec.class_name}(in_channels={in_channels}, num_classes={num_classes})"
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        fail(f"{spec.class_name} must be a class derived from nn.Module, found {cls!r}")
    try:
        with torch.device(device):
            model = cls(in_channels=in_channels, num_classes=num_classes)
    except NotImplementedError:
        fail(f"{call} raised NotImplementedError: write the model in the {spec.class_name} cell")
    except Exception as error:  # noqa: BLE001 - any student error becomes a message
        fail(f"{call} raised {type(error).__name__}: {error}")
    if not isinstance(model, nn.Module):
        fail(f"{call} did not return an nn.Module")
    return model


def children(module: nn.Module) -> dict[str, Any]:
    """The registered submodules, read past any overridden accessors."""
    return dict(object.__getattribute__(module, "_modules"))


def own_tensors(module: nn.Module) -> dict[str, Any]:
    """The module's own registered parameters, read past any overridden accessors."""
    return dict(object.__getattribute__(module, "_parameters"))


def walk(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """Every module below ``module`` (itself included), each once, in registration order
    (depth first, like ``named_modules``)."""
    seen: set[int] = set()

    def visit(name: str, mod: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        if mod is None or id(mod) in seen:
            return
        seen.add(id(mod))
        yield name, mod
        for child_name, child in children(mod).items():
            yield from visit(f"{name}.{child_name}" if name else child_name, child)

    yield from visit(prefix, module)


def tensor_size(tensor: Any, where: str) -> int:
    """Number of elements, from the shape of a genuine ``nn.Parameter``."""
    if type(tensor) is not nn.Parameter:  # subclasses could report any size they like
        fail(f"{where} is a {type(tensor).__name__}, expected a plain nn.Parameter "
             f"(use the standard nn.Conv2d / nn.Linear layers)")
    return math.prod(int(s) for s in torch.Tensor.size(tensor))


def all_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter, nn.Module]]:
    """(qualified name, tensor, owning module) of every distinct registered parameter."""
    seen: set[int] = set()
    out = []
    for mod_name, mod in walk(model):
        for name, tensor in own_tensors(mod).items():
            if tensor is None or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            out.append((f"{mod_name}.{name}" if mod_name else name, tensor, mod))
    return out


def forward_calls(model: nn.Module, x: torch.Tensor, kinds: tuple[type, ...],
                  ) -> tuple[list[tuple[nn.Module, tuple[int, ...]]], torch.Tensor]:
    """Run ``model(x)`` and record (module, output shape) for each call of a module of ``kinds``."""
    calls: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = []
    for _name, mod in walk(model):
        if isinstance(mod, kinds):
            def record(m: nn.Module, _inputs: Any, output: Any) -> None:
                calls.append((m, tuple(output.shape) if torch.is_tensor(output) else ()))
            hooks.append(nn.Module.register_forward_hook(mod, record))
    try:
        out = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return calls, out


def run_forward(model: nn.Module, x: torch.Tensor, spec: ModelSpec, what: str,
                kinds: tuple[type, ...] = ()) -> tuple[list[tuple[nn.Module, tuple[int, ...]]], Any]:
    """``forward_calls`` under no_grad/eval, turning an exception into a student message."""
    shape = " x ".join(str(s) for s in x.shape)
    try:
        with torch.no_grad():
            nn.Module.eval(model)
            return forward_calls(model, x, kinds)
    except CheckFailed:
        raise
    except NotImplementedError:
        fail(f"{spec.class_name}.forward raised NotImplementedError: write forward()")
    except Exception as error:  # noqa: BLE001
        fail(f"{what}: the forward pass of a {shape} batch raised "
             f"{type(error).__name__}: {error}")
    raise AssertionError("unreachable")


def log(message: str) -> None:
    """Student-visible line on stdout."""
    print(message, file=sys.stdout, flush=True)
