"""The hidden checks: each takes the student's model CLASS and raises AssertionError.

Call them as ``grade.parameters("alexnet", AlexNet)`` (likewise ``logits``,
``feature_maps``, ``trainable``, ``accuracy``). Messages speak to the student: what was
found, what was expected, where to look. Nothing is written to stderr.
"""
from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cnn_course import fit, get_profile, load_split, prepare_batch, seed_everything
from cnn_course.layers import formula_parameters

from ._util import (CheckFailed, all_parameters, build, fail, forward_calls, log, own_tensors,
                    quiet, run_forward, tensor_size, walk)
from .recipes import grading_recipe
from .spec import Layer, ModelSpec, get_spec

CONFIGS = ((3, 1000), (1, 10))  # (in_channels, num_classes) the checks build
REQUIRE_GPU_ENV = "CNN_GRADER_REQUIRE_GPU"
TRAIN_IMAGES, TRAIN_STEPS, MIN_DECREASE = 8, 1, 0.01  # trainable: batch, steps, relative drop
STEP_LENGTHS = (1.0, 0.3, 0.1)  # trainable: step lengths (parameter-space L2) tried


def _fmt(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


def _call(spec: ModelSpec, in_channels: int, num_classes: int) -> str:
    return f"{spec.class_name}(in_channels={in_channels}, num_classes={num_classes})"


# ----------------------------------------------------------------------------- building
def reinit(model: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic weights: Kaiming-normal convolutions, N(0, 0.01) linear layers, zero biases.

    The grader's own initialisation, so that every submission trains from the same start
    whatever it does in ``__init__``.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, mod in walk(model):
            if not isinstance(mod, (nn.Conv2d, nn.Linear)):
                continue
            tensors = own_tensors(mod)
            weight, bias = tensors.get("weight"), tensors.get("bias")
            if weight is not None:
                if isinstance(mod, nn.Conv2d):
                    nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu",
                                            generator=generator)
                else:
                    nn.init.normal_(weight, 0.0, 0.01, generator=generator)
            if bias is not None:
                bias.zero_()
    return model


def fresh_model(cls: type, spec: ModelSpec, in_channels: int, num_classes: int,
                seed: int = 0) -> nn.Module:
    """A CPU instance with the grader's deterministic weights.

    Built on the meta device and materialised without PyTorch's default initialisation
    (which costs seconds for these large layers) when every tensor belongs to a Conv2d or
    Linear layer; otherwise built normally under a fixed seed.
    """
    model = build(cls, spec, in_channels, num_classes, device="meta")
    simple = all(isinstance(mod, (nn.Conv2d, nn.Linear))
                 for _n, _t, mod in all_parameters(model))
    simple = simple and not any(True for _ in model.buffers())
    if simple:
        try:
            model = model.to_empty(device="cpu")
        except Exception:  # noqa: BLE001 - fall back to a normal build
            simple = False
    if not simple:
        torch.manual_seed(seed)
        model = build(cls, spec, in_channels, num_classes, device="cpu")
    return reinit(model, seed)


def _layers_in_order(model: nn.Module, spec: ModelSpec, in_channels: int,
                     ) -> list[nn.Module]:
    """Conv2d/Linear modules in the order forward() uses them (registration order if the
    shape-only forward pass is impossible)."""
    x = torch.zeros(1, in_channels, spec.full_size, spec.full_size, device="meta")
    try:
        with torch.no_grad():
            calls, _ = forward_calls(model, x, (nn.Conv2d, nn.Linear))
        order: list[nn.Module] = []
        for mod, _shape in calls:
            if all(mod is not seen for seen in order):
                order.append(mod)
        registered = [m for _n, m in walk(model) if isinstance(m, (nn.Conv2d, nn.Linear))]
        return order + [m for m in registered if all(m is not o for o in order)]
    except Exception:  # noqa: BLE001 - forward() is checked elsewhere
        return [m for _n, m in walk(model) if isinstance(m, (nn.Conv2d, nn.Linear))]


# ----------------------------------------------------------------------------- parameters
def _compare_layer(expected: Layer, mod: nn.Module, spec: ModelSpec) -> None:
    name = expected.name
    if type(mod).__name__ != expected.kind and not isinstance(
            mod, nn.Conv2d if expected.kind == "Conv2d" else nn.Linear):
        fail(f"{name} should be {expected.describe()}, found a {type(mod).__name__}")
    tensors = own_tensors(mod)
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is None:
        fail(f"{name} ({type(mod).__name__}) has no weight tensor")
    weights = tensor_size(weight, f"{name}.weight")
    if weights != expected.weights:
        kernel = (f" and the {expected.kernel}x{expected.kernel} kernel"
                  if expected.kind == "Conv2d" else "")
        what = "in_channels" if expected.kind == "Conv2d" else "in_features"
        fail(f"{name} has {weights:,} weights, expected {expected.weights:,} = "
             f"{expected.formula()}: check {what}={expected.in_}, "
             f"{'out_channels' if expected.kind == 'Conv2d' else 'out_features'}="
             f"{expected.out}{kernel}, i.e. {expected.describe()}")
    shape = tuple(int(s) for s in torch.Tensor.size(weight))
    if shape != expected.weight_shape:
        fail(f"{name}.weight has shape {_fmt(shape)}, expected {_fmt(expected.weight_shape)}: "
             f"write it as {expected.describe()}")
    if bias is None:
        fail(f"{name} has no bias; the papers' layers have one (keep bias=True)")
    biases = tensor_size(bias, f"{name}.bias")
    if biases != expected.out:
        fail(f"{name} has {biases:,} biases, expected {expected.out:,}")
    implied = formula_parameters(mod)
    if implied is not None and implied != weights + biases:
        fail(f"{name} stores {weights + biases:,} parameters but its own settings imply "
             f"{implied:,}: build it with {expected.describe()} and do not replace its tensors")


def _check_parameters(cls: type, spec: ModelSpec, in_channels: int, num_classes: int) -> int:
    call = _call(spec, in_channels, num_classes)
    try:
        model = build(cls, spec, in_channels, num_classes, device="meta")
    except CheckFailed:
        model = build(cls, spec, in_channels, num_classes, device="cpu")
    tensors = all_parameters(model)
    total = sum(tensor_size(t, name) for name, t, _mod in tensors)
    expected = spec.resolved(in_channels, num_classes)
    layers = _layers_in_order(model, spec, in_channels)
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    want_convs = [e for e in expected if e.kind == "Conv2d"]
    want_linears = [e for e in expected if e.kind == "Linear"]
    if len(convs) != len(want_convs):
        fail(f"{call} has {len(convs)} nn.Conv2d layers, expected {len(want_convs)} "
             f"({want_convs[0].name} to {want_convs[-1].name})")
    if len(linears) != len(want_linears):
        fail(f"{call} has {len(linears)} nn.Linear layers, expected {len(want_linears)} "
             f"(fc1 to fc3)")
    for want, mod in zip(want_convs + want_linears, convs + linears):
        _compare_layer(want, mod, spec)
    layer_ids = {id(m) for m in layers}
    extra = [(name, t) for name, t, mod in tensors if id(mod) not in layer_ids]
    if extra:
        names = ", ".join(name for name, _t in extra[:3])
        fail(f"{call} has parameters outside its Conv2d/Linear layers ({names}); "
             f"the assignment's networks have no other trainable layers")
    if total != spec.totals[(in_channels, num_classes)]:
        fail(f"{call} has {total:,} parameters, expected "
             f"{spec.totals[(in_channels, num_classes)]:,}")
    return total


def parameters(model: str, cls: type) -> None:
    """Parameter counts for (3, 1000) and (1, 10), layer by layer, from the tensors themselves."""
    spec = get_spec(model)
    with quiet():
        counts = [_check_parameters(cls, spec, c, k) for c, k in CONFIGS]
    log(f"{spec.class_name}: parameter counts correct "
        f"({', '.join(f'{n:,}' for n in counts)} for {' and '.join(map(str, CONFIGS))})")


# ----------------------------------------------------------------------------- logits
def _check_output(out: Any, batch: int, spec: ModelSpec, in_channels: int, num_classes: int,
                  size: int) -> None:
    call = _call(spec, in_channels, num_classes)
    if not torch.is_tensor(out):
        fail(f"{call} returned a {type(out).__name__}; forward() must return one tensor "
             f"of logits")
    shape = tuple(out.shape)
    if shape != (batch, num_classes):
        fail(f"{call} gave an output of shape ({', '.join(map(str, shape))}) for a batch of "
             f"{batch} images of {in_channels} x {size} x {size}, expected "
             f"({batch}, {num_classes}): flatten the features to (batch, features) and end "
             f"with nn.Linear(4096, num_classes)")


def logits(model: str, cls: type) -> None:
    """Output shape (B, classes) for B = 1 and 8: (3, 1000) at the papers' size (shapes only),
    (1, 10) with real numbers at the profile's training size."""
    spec = get_spec(model)
    size = get_profile().image_size(spec.key)
    with quiet():
        meta_ok = True
        try:
            meta_model = build(cls, spec, 3, 1000, device="meta")
        except CheckFailed:
            meta_ok = False
        for batch in (1, 8):
            x = torch.zeros(batch, 3, spec.full_size, spec.full_size)
            if meta_ok:
                try:
                    with torch.no_grad():
                        out = meta_model.eval()(x.to("meta"))
                    _check_output(out, batch, spec, 3, 1000, spec.full_size)
                    continue
                except CheckFailed:
                    raise
                except Exception:  # noqa: BLE001 - retry for real below
                    meta_ok = False
            real = fresh_model(cls, spec, 3, 1000)
            _calls, out = run_forward(real, x, spec, _call(spec, 3, 1000))
            _check_output(out, batch, spec, 3, 1000, spec.full_size)
        model_ = fresh_model(cls, spec, 1, 10)
        images, _labels = _batch(8)
        for batch in (1, 8):
            x = prepare_batch(images[:batch], size)
            _calls, out = run_forward(model_, x, spec, _call(spec, 1, 10))
            _check_output(out, batch, spec, 1, 10, size)
            if not torch.isfinite(out).all():
                fail(f"{_call(spec, 1, 10)} gave non-finite logits (nan or inf) for "
                     f"{size} x {size} images")
            if batch == 8 and bool((out >= 0).all()):
                if torch.allclose(out.sum(1), torch.ones(batch), atol=1e-3):
                    fail(f"{spec.class_name} returns probabilities; return the raw scores "
                         f"(logits): nn.CrossEntropyLoss applies the softmax itself")
                fail(f"{spec.class_name} returns only non-negative scores: the last layer "
                     f"should be a plain nn.Linear(4096, num_classes) with no ReLU after it")
    log(f"{spec.class_name}: logits have shape (batch, classes) for batches of 1 and 8")


# ----------------------------------------------------------------------------- feature maps
def feature_maps(model: str, cls: type) -> None:
    """Shape after every nn.MaxPool2d at the papers' input size (3 channels)."""
    spec = get_spec(model)
    size = spec.full_size
    call = _call(spec, 3, 1000)
    with quiet():
        try:
            net = build(cls, spec, 3, 1000, device="meta")
            calls, _ = run_forward(net, torch.zeros(1, 3, size, size, device="meta"), spec,
                                   call, (nn.MaxPool2d,))
        except CheckFailed:
            net = fresh_model(cls, spec, 3, 1000)
            calls, _ = run_forward(net, torch.zeros(1, 3, size, size), spec, call,
                                   (nn.MaxPool2d,))
        shapes = [shape[1:] for _mod, shape in calls]
        want = spec.pool_shapes
        for stage, (found, expected) in enumerate(zip(shapes, want), 1):
            if found != expected:
                fail(f"for a 3 x {size} x {size} image, the feature map after max-pool "
                     f"{stage} is {_fmt(found)}, expected {_fmt(expected)}: check "
                     f"{spec.pool_hints[stage - 1]}")
        if len(shapes) != len(want):
            fail(f"the forward pass goes through {len(shapes)} nn.MaxPool2d layers, expected "
                 f"{len(want)}, with maps of {', '.join(_fmt(s) for s in want)} "
                 f"(use nn.MaxPool2d modules, not F.max_pool2d, so they can be inspected)")
    log(f"{spec.class_name}: feature maps after pooling at {size}x{size}: "
        f"{', '.join(_fmt(s) for s in shapes)}")


# ----------------------------------------------------------------------------- trainable
def _batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of the committed subset (the same on every machine)."""
    images, labels = load_split(True, get_profile("ci"))
    return images[:n], labels[:n]


def trainable(model: str, cls: type) -> None:
    """Gradients reach every parameter, and gradient steps lower the loss of one small batch.

    On a fixed batch of the committed subset (dropout off), at the profile's image size:
    one backward pass must give every parameter a finite gradient; then the loss after a
    step along the normalised negative gradient (best of a few step lengths) must be
    clearly lower than before.
    """
    spec = get_spec(model)
    size = get_profile().image_size(spec.key)
    call = _call(spec, 1, 10)
    with quiet():
        net = fresh_model(cls, spec, 1, 10)
        images, labels = _batch(TRAIN_IMAGES)
        x = prepare_batch(images, size)
        nn.Module.eval(net)  # dropout off: the check is about the weights, not the noise
        named = all_parameters(net)
        tensors = [t for _n, t, _m in named]
        if any(not t.requires_grad for t in tensors):
            frozen = next(n for n, t, _m in named if not t.requires_grad)
            fail(f"{frozen} is frozen (requires_grad=False); every layer must train")
        losses = []
        for _step in range(TRAIN_STEPS):
            for t in tensors:
                t.grad = None
            try:
                loss = F.cross_entropy(net(x), labels)
            except Exception as error:  # noqa: BLE001
                fail(f"{call}: the forward pass raised {type(error).__name__}: {error}")
            if not loss.requires_grad:
                fail(f"{spec.class_name}'s output is not connected to its weights: does "
                     f"forward() use torch.no_grad(), .detach(), .data or .numpy()?")
            if not torch.isfinite(loss):
                fail(f"{spec.class_name} gives a non-finite loss ({loss.item()}) on "
                     f"{size} x {size} images")
            loss.backward()
            for name, tensor, _mod in named:
                if tensor.grad is None:
                    fail(f"{name} received no gradient: is that layer used in forward(), and "
                         f"does forward() keep the computation graph (no .detach(), no "
                         f"torch.no_grad())?")
                if not torch.isfinite(tensor.grad).all():
                    fail(f"{name} received a non-finite gradient")
            grads = [t.grad for t in tensors]
            norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
            if norm == 0:
                fail(f"all gradients of {spec.class_name} are zero: the loss does not depend "
                     f"on the weights")
            before = loss.item()
            best, best_length = before, 0.0
            with torch.no_grad():
                for length in STEP_LENGTHS:  # try a step, undo it
                    torch._foreach_add_(tensors, grads, alpha=-length / norm)
                    trial = F.cross_entropy(net(x), labels).item()
                    torch._foreach_add_(tensors, grads, alpha=length / norm)
                    if trial < best:
                        best, best_length = trial, length
                if best_length:
                    torch._foreach_add_(tensors, grads, alpha=-best_length / norm)
            losses.append((before, best))
            if not best < before * (1 - MIN_DECREASE):
                fail(f"a gradient step did not lower {spec.class_name}'s loss on a batch of "
                     f"{len(labels)} images ({before:.4f} -> {best:.4f}): check that forward() "
                     f"uses every layer once, in order, with ReLUs, and that nothing is "
                     f"detached")
        for t in tensors:
            t.grad = None
    log(f"{spec.class_name}: every parameter gets a gradient; loss on {len(labels)} images "
        f"{losses[0][0]:.3f} -> {losses[-1][1]:.3f} after {TRAIN_STEPS} gradient step(s)")


# ----------------------------------------------------------------------------- accuracy
_ACTIVATIONS = {"relu", "relu_", "leaky_relu", "leaky_relu_", "rrelu", "elu", "elu_", "selu",
                "celu", "gelu", "silu", "mish", "hardswish", "prelu", "softplus", "threshold"}
_LAYERS = {"conv2d", "linear"}


class _OpRecorder(TorchFunctionMode):
    """Records the names of the torch functions a forward pass calls, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.ops.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def nonlinearities(model: str, cls: type) -> None:
    """A nonlinearity must follow every convolution and every hidden linear layer.

    Part of the accuracy check: in the short CPU grading runs a network without ReLUs
    (a linear model with max-pooling) learns FashionMNIST as fast as the real one, so
    its accuracy alone cannot tell them apart there.
    """
    spec = get_spec(model)
    size = get_profile().image_size(spec.key)
    net = build(cls, spec, 1, 10, device="meta")
    recorder = _OpRecorder()
    try:
        with torch.no_grad(), recorder:
            nn.Module.eval(net)
            net(torch.zeros(2, 1, size, size, device="meta"))
    except Exception:  # noqa: BLE001 - shapes and forward errors are other parts' business
        return
    names = [layer.name for layer in spec.layers]
    index, pending = -1, False
    for op in recorder.ops:
        if op in _LAYERS:
            if pending:
                fail(f"{spec.class_name}.forward applies no activation between "
                     f"{names[index] if index < len(names) else 'a layer'} and the next layer: "
                     f"the papers put a ReLU after every convolution and hidden linear layer")
            index += 1
            pending = True
        elif op in _ACTIVATIONS:
            pending = False
    # the last layer (the classifier's output) stays linear: pending is expected there


def trained_accuracy(model: str, cls: type, profile: str | None = None,
                     seed: int | None = None, gate: bool = True) -> float:
    """Train ``cls`` with the grader's recipe for the profile; return its test accuracy.

    Prints the profile and the accuracy reached. ``$CNN_GRADER_REQUIRE_GPU=1`` refuses
    to train without CUDA. ``seed`` overrides the recipe's seed and ``gate=False`` skips
    the nonlinearity check (both for calibration runs only). A crash while training is a
    failure for the student.
    """
    spec = get_spec(model)
    prof = get_profile(profile)
    cuda = torch.cuda.is_available()
    if os.environ.get(REQUIRE_GPU_ENV, "").strip() not in ("", "0") and not cuda:
        raise RuntimeError(f"{REQUIRE_GPU_ENV} is set but no CUDA GPU is visible: the "
                           f"accuracy check was not run (grade on a GPU machine, or unset it)")
    if prof.name == "full" and not cuda:
        raise RuntimeError("the full grading profile trains at the papers' resolutions and "
                           "needs a CUDA GPU; set CNN_COURSE_PROFILE=cpu or ci on this machine")
    plan = grading_recipe(spec.key, prof.name)
    recipe = plan.recipe if seed is None else type(plan.recipe)(
        **{**plan.recipe.__dict__, "seed": seed})
    device = torch.device("cuda" if cuda else "cpu")
    with quiet():
        if gate:
            nonlinearities(spec.key, cls)
        images, labels = load_split(True, prof)
        test_images, test_labels = load_split(False, prof)
        train = (images[:plan.train_size], labels[:plan.train_size])
        test = (test_images[:plan.test_size], test_labels[:plan.test_size])
        seed_everything(recipe.seed)
        net = fresh_model(cls, spec, 1, 10, seed=recipe.seed)
        start = time.perf_counter()
        try:
            history = fit(net, train, test, recipe, device=device, progress=False)
        except Exception as error:  # noqa: BLE001
            fail(f"training {spec.class_name} with the grader's recipe raised "
                 f"{type(error).__name__}: {error}")
        seconds = time.perf_counter() - start
        acc = history.test_acc[-1]
    log(f"graded with profile {prof.name} on {device.type}: {spec.class_name} reached test "
        f"accuracy {acc:.3f} on {len(test[1]):,} test images after training on "
        f"{len(train[1]):,} images ({plan.describe()}, {seconds:.0f} s)")
    return acc


def accuracy(model: str, cls: type, profile: str | None = None, seed: int | None = None,
             gate: bool = True) -> float:
    """Train with the grader's own recipe for the profile; test accuracy must be high enough.

    ``trained_accuracy`` (same arguments) against the profile's threshold.
    """
    spec = get_spec(model)
    acc = trained_accuracy(spec.key, cls, profile, seed, gate)
    if not acc >= grading_recipe(spec.key, get_profile(profile).name).threshold:
        fail(f"{spec.class_name} reached only {acc:.3f} test accuracy with the grader's "
             f"training recipe, too low for a working {spec.class_name}: check the ReLU after "
             f"every convolution and hidden linear layer, the strides and the pooling")
    return acc
