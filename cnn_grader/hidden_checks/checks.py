"""The logic of the graded parts, on networks the grader rebuilt from their descriptions.

Every function takes validated ``Graph``s (never the student's objects), raises
``AssertionError`` with a message for the student, and returns a one-line summary.
The pytest module ``test_parts.py`` calls them; ``runner.py`` runs that module.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from cnn_course import fit, get_profile, load_split, prepare_batch, seed_everything

from cnn_grader.netgraph.analysis import (detach_problem, equivalence_problem, no_grad_problem,
                               nonlinearity_problem, pooling_problem)
from cnn_grader.netgraph.description import Graph, Inventory, Node, Ref
from cnn_grader.netgraph.rebuild import NotRebuildable, Rebuilt
from cnn_grader.netgraph.analysis import MAX_POOLS
from cnn_grader.netgraph.words import short_class, where
from cnn_grader import training_cache, training_tasks
from cnn_grader.environment import REQUIRE_GPU_ENV, gpu_required

from .recipes import GradingRecipe, grading_recipe
from cnn_grader.paper import Layer, ModelSpec

TRAIN_IMAGES, MIN_DECREASE = 8, 0.01  # trainable: batch size, relative loss drop
MIN_TRAINING_DECREASE = 0.002  # accuracy on a CPU: relative drop of the training loss
STEP_LENGTHS = (1.0, 0.3, 0.1)  # trainable: step lengths (parameter-space L2) tried
WEIGHTED = {"aten.conv2d.default": "Conv2d", "aten.conv2d.padding": "Conv2d",
            "aten.linear.default": "Linear"}
MODULE_KINDS = {"torch.nn.modules.conv.Conv2d": "Conv2d", "torch.nn.modules.linear.Linear": "Linear"}
LOGIT_IMAGES = 2  # real images through the (1, 10) network at the paper's size


def fail(message: str) -> None:
    raise AssertionError(message)


def _fmt(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


def _call(spec: ModelSpec, graph: Graph | Inventory) -> str:
    return f"{spec.class_name}(in_channels={graph.in_channels}, num_classes={graph.num_classes})"


# ----------------------------------------------------------------------------- building
def reinit(net: Rebuilt, seed: int = 0) -> Rebuilt:
    """The grader's weights, by each parameter's shape, however forward() uses it:
    Kaiming-normal (fan_out) for 4-d weights (convolutions), N(0, 0.01) for 2-d ones
    (linear layers), zeros for biases, ones for any other vector (a normalisation's scale,
    a gain), in the order the network lists its parameters."""
    named = net.named_graph_parameters()
    layout = tuple((tuple(w.shape), name.endswith("bias")) for name, w in named)
    with torch.no_grad():
        for (_name, w), value in zip(named, _initial_weights(layout, seed), strict=True):
            w.copy_(value)
    return net


@functools.lru_cache(maxsize=1)
def _initial_weights(layout: tuple[tuple[tuple[int, ...], bool], ...], seed: int
                     ) -> tuple[torch.Tensor, ...]:
    """``reinit``'s values for parameters of these (shape, is a bias): drawn once for the
    parts that rebuild one network in turn (logits, trainable, training; drawing VGG16's
    weights takes 1.4 s on 2 cores). Callers copy them, never change them."""
    generator = torch.Generator().manual_seed(seed)
    values = []
    with torch.no_grad():
        for shape, bias in layout:
            w = torch.empty(shape)
            if w.dim() == 4:
                nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu",
                                        generator=generator)
            elif w.dim() == 2:
                nn.init.normal_(w, 0.0, 0.01, generator=generator)
            else:
                w.fill_(0.0 if bias else 1.0)
            values.append(w)
    return tuple(values)


def rebuilt(graph: Graph, seed: int = 0, device: str = "cpu") -> Rebuilt:
    """The graph as a module with the grader's weights (shapes only on ``meta``)."""
    net = Rebuilt(graph, device=device)
    return net if device == "meta" else reinit(net, seed)


def weighted_nodes(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if n.op in WEIGHTED]


def _layer_params(node: Node) -> tuple[str, str | None]:
    """(weight, bias or None) parameter names of a conv2d/linear node."""
    args = list(node.args) + [None] * 3
    weight, bias = args[1], args[2]
    if not (isinstance(weight, Ref) and weight.kind == "param"):
        fail(f"a {WEIGHTED[node.op]} layer in forward() takes its weights from a computed "
             f"tensor; use the layer's own registered weights")
    return weight.name, bias.name if isinstance(bias, Ref) and bias.kind == "param" else None


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class LayerUse:
    """A Conv2d/Linear layer as the parameters part sees it."""

    kind: str  # "Conv2d" or "Linear"
    weight: str
    bias: str | None


def layers_in_forward(graph: Graph) -> list[LayerUse]:
    """The Conv2d/Linear operations of forward(), in the order they run."""
    uses = []
    for node in weighted_nodes(graph):
        weight, bias = _layer_params(node)
        uses.append(LayerUse(WEIGHTED[node.op], weight, bias))
    return uses


def layers_built(inventory: Inventory) -> list[LayerUse]:
    """The nn.Conv2d/nn.Linear modules the constructor built, in registration order."""
    names = {name for name, _shape in inventory.params}
    uses = []
    for path, classes in inventory.modules:
        kind = next((MODULE_KINDS[c] for c in classes if c in MODULE_KINDS), None)
        prefix = f"{path}." if path else ""
        if kind and f"{prefix}weight" in names:
            bias = f"{prefix}bias" if f"{prefix}bias" in names else None
            uses.append(LayerUse(kind, f"{prefix}weight", bias))
    return uses


def _compare_layer(expected: Layer, use: LayerUse, shapes: dict[str, tuple[int, ...]]) -> None:
    kind = use.kind  # the same as expected.kind: layers are paired kind by kind
    shape = shapes[use.weight]
    weights = math.prod(shape)
    if weights != expected.weights:
        kernel = (f" and the {expected.kernel}x{expected.kernel} kernel"
                  if expected.kind == "Conv2d" else "")
        what = ("in_channels", "out_channels") if kind == "Conv2d" else ("in_features",
                                                                         "out_features")
        fail(f"{expected.name} has {weights:,} weights, expected {expected.weights:,} = "
             f"{expected.formula()}: check {what[0]}={expected.in_}, {what[1]}="
             f"{expected.out}{kernel}, i.e. {expected.describe()}")
    if shape != expected.weight_shape:
        fail(f"{expected.name}.weight has shape {_fmt(shape)}, expected "
             f"{_fmt(expected.weight_shape)}: write it as {expected.describe()}")
    if use.bias is None:  # a layer's bias has its output's size whenever its weight does
        fail(f"{expected.name} has no bias; the papers' layers have one (keep bias=True)")


def _owners(names: list[str], source: Graph | Inventory) -> str:
    """``self.features.1 (nn.BatchNorm2d): weight, bias`` for parameter names."""
    owners: dict[str, list[str]] = {}
    for name in names:
        path, _, leaf = name.rpartition(".")
        owners.setdefault(path, []).append(leaf)
    parts = []
    for path, leaves in list(owners.items())[:3]:
        cls = source.module_class(path)
        where = (f"self.{path}" if path else "self") + (f" ({short_class(cls)})" if cls else "")
        parts.append(f"{where}: {', '.join(leaves)}")
    return "; ".join(parts) + ("; ..." if len(owners) > 3 else "")


def parameters(spec: ModelSpec, source: Graph | Inventory) -> int:
    """Layer by layer (in forward order for a graph, in the constructor's order for an
    inventory), and no other parameters; returns the total."""
    call = _call(spec, source)
    shapes = dict(source.params)
    uses = layers_in_forward(source) if isinstance(source, Graph) else layers_built(source)
    where = "forward()" if isinstance(source, Graph) else "the constructor"
    expected = spec.resolved(source.in_channels, source.num_classes)
    for kind in ("Conv2d", "Linear"):
        found = [u for u in uses if u.kind == kind]
        want = [e for e in expected if e.kind == kind]
        if len(found) != len(want):
            fail(f"{call} has {len(found)} nn.{kind} layers in {where}, expected "
                 f"{len(want)} ({want[0].name} to {want[-1].name})")
    used: dict[str | None, str] = {}  # parameter name -> the paper's layer that uses it
    for want, use in zip([e for e in expected if e.kind == "Conv2d"]
                         + [e for e in expected if e.kind == "Linear"],
                         [u for u in uses if u.kind == "Conv2d"]
                         + [u for u in uses if u.kind == "Linear"]):
        _compare_layer(want, use, shapes)
        if use.weight in used:
            fail(f"{want.name} applies the weights of {used[use.weight]} again "
                 f"({_owners([use.weight], source)}); every layer needs its own")
        used.update({use.weight: want.name, use.bias: want.name})
    extra = [name for name, _shape in source.params if name not in used]
    if extra:
        fail(f"{call} has parameters that no Conv2d/Linear layer of {where} uses "
             f"({_owners(extra, source)}); the assignment's networks have no other "
             f"trainable tensors")
    # every layer as in the table and nothing else: the total is the paper's
    return sum(math.prod(shape) for _name, shape in source.params)


# ----------------------------------------------------------------------------- forward
def forward(net: Rebuilt, x: torch.Tensor, what: str, record: dict | None = None,
            targets: list[str] | None = None):
    """``net(x)`` without gradients, turning an exception into a student message."""
    try:
        with torch.no_grad():
            return net(x, record, targets)
    except NotRebuildable as error:
        fail(str(error))
    except Exception as error:  # noqa: BLE001 - any failure becomes a message
        fail(f"{what}: the forward pass of a {_fmt(tuple(x.shape))} batch raised "
             f"{type(error).__name__}: {str(error)[:300]}")


def _check_output(out: torch.Tensor, batch: int, spec: ModelSpec, graph: Graph) -> None:
    shape = tuple(out.shape)
    if shape != (batch, graph.num_classes):
        fail(f"{_call(spec, graph)} gave an output of shape ({', '.join(map(str, shape))}) for "
             f"a batch of {batch} images of {graph.in_channels} x {graph.size} x {graph.size}, "
             f"expected ({batch}, {graph.num_classes}): flatten the features to (batch, "
             f"features) and end with nn.Linear(4096, num_classes)")


def first_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of the committed subset (the same on every machine)."""
    images, labels = load_split(True, get_profile("ci"))
    return images[:n], labels[:n]


def _returns_problem(spec: ModelSpec, graph: Graph) -> str | None:
    """forward() must return the logits alone, as the assignment says (and ``fit``
    and the visible test need); the other parts read a tuple's first value."""
    if graph.returns == "tensor":
        return None
    first = graph.node(graph.output.name)
    at = f"line `{first.line}`" if first.line else where(first, graph)
    return (f"{spec.class_name}.forward() returns a tuple whose first value comes from {at}: "
            f"return the logits alone, one tensor of shape (batch, num_classes) (the grader "
            f"reads that first value as the logits in the other parts)")


def _inference_mode_problem(graph: Graph) -> str | None:
    """forward() computes in torch.inference_mode(): nothing it computes has a gradient."""
    if not graph.inference_mode:
        return None
    line = graph.inference_mode[0]
    at = f"forward(), line `{line}`" if line else "forward()"
    return (f"forward() computes in torch.inference_mode() from {at}: no gradient reaches "
            f"the layers it runs, which would never be trained. Leave it out of forward(): "
            f"evaluation switches gradients off itself")


def _eval_dropout_problem(graph: Graph) -> str | None:
    """A dropout that stays on in eval mode makes every prediction random."""
    if not graph.drops_in_eval:
        return None
    line = graph.drops_in_eval[0]
    at = f"forward(), line `{line}`," if line else "forward()"
    return (f"a dropout at {at} stays on in eval mode, so the network's predictions are "
            f"random: pass training=self.training (F.dropout's default is training=True), "
            f"or use an nn.Dropout module")


def logits(spec: ModelSpec, paper: Graph, small: Graph) -> str:
    """forward() returns the logits alone; (batch, classes) for batches of 1 and 8 at the
    paper's size: shapes of (3, 1000) on the meta device, real logits of (1, 10) on a few
    images (no dropout on in eval mode, finite, raw scores)."""
    problem = _returns_problem(spec, paper)
    if problem:
        fail(problem)
    net = rebuilt(paper, device="meta").eval()
    for batch in (1, 8):
        x = torch.zeros(batch, paper.in_channels, paper.size, paper.size, device="meta")
        _check_output(forward(net, x, _call(spec, paper)), batch, spec, paper)
    problem = _eval_dropout_problem(small)
    if problem:
        fail(problem)
    net = rebuilt(small).eval()
    images, _labels = first_images(LOGIT_IMAGES)
    out = forward(net, prepare_batch(images, small.size), _call(spec, small))
    _check_output(out, LOGIT_IMAGES, spec, small)
    if not torch.isfinite(out).all():
        fail(f"{_call(spec, small)} gave non-finite logits (nan or inf) for "
             f"{small.size} x {small.size} images")
    if bool((out >= 0).all()):
        if torch.allclose(out.sum(1), torch.ones(len(out)), atol=1e-3):
            fail(f"{spec.class_name} returns probabilities; return the raw scores "
                 f"(logits): nn.CrossEntropyLoss applies the softmax itself")
        fail(f"{spec.class_name} returns only non-negative scores: the last layer should "
             f"be a plain nn.Linear(4096, num_classes) with no ReLU after it")
    return (f"{spec.class_name}: logits have shape (batch, classes) for batches of 1 and 8 at "
            f"{paper.size}x{paper.size}")


def feature_maps(spec: ModelSpec, paper: Graph) -> str:
    """The shape after every max-pool at the paper's input size, and the pools' windows."""
    net = rebuilt(paper, device="meta").eval()
    record: dict = {}
    pools = [n.name for n in paper.nodes if n.op in MAX_POOLS]
    forward(net, torch.zeros(1, paper.in_channels, paper.size, paper.size, device="meta"),
            _call(spec, paper), record, targets=pools)
    shapes = [tuple((record[n][0] if isinstance(record[n], tuple) else record[n]).shape[1:])
              for n in pools]
    size = paper.size
    for stage, (found, want) in enumerate(zip(shapes, spec.pool_shapes), 1):
        if found != want:
            fail(f"for a 3 x {size} x {size} image, the feature map after max-pool {stage} is "
                 f"{_fmt(found)}, expected {_fmt(want)}: check {spec.pool_hints[stage - 1]}")
    if len(shapes) != len(spec.pool_shapes):
        fail(f"the forward pass goes through {len(shapes)} max-pooling layers, expected "
             f"{len(spec.pool_shapes)}, with maps of "
             f"{', '.join(_fmt(s) for s in spec.pool_shapes)}")
    problem = pooling_problem(paper, spec.key)
    if problem:
        fail(problem)
    return (f"{spec.class_name}: feature maps after pooling at {size}x{size}: "
            f"{', '.join(_fmt(s) for s in shapes)}")


# ----------------------------------------------------------------------------- trainable
def trainable(spec: ModelSpec, small: Graph) -> str:
    """Every parameter gets a finite gradient, and a step along the negative gradient
    lowers the loss of 8 fixed images (dropout off, grader's weights)."""
    problem = detach_problem(small) or no_grad_problem(small) or _inference_mode_problem(small)
    if problem:
        fail(problem)
    if small.frozen:
        fail(f"{small.frozen[0]} is frozen (requires_grad=False); every layer must train")
    net = rebuilt(small).eval()
    blocker = net.blocker()
    if blocker:
        fail(blocker)
    images, labels = first_images(TRAIN_IMAGES)
    x = prepare_batch(images, small.size)
    named = net.named_graph_parameters()
    tensors = [t for _n, t in named]
    try:
        loss = F.cross_entropy(net(x), labels)
    except Exception as error:  # noqa: BLE001
        fail(f"{_call(spec, small)}: the forward pass raised {type(error).__name__}: {error}")
    if not torch.isfinite(loss):
        fail(f"{spec.class_name} gives a non-finite loss ({loss.item()}) on {small.size} x "
             f"{small.size} images")
    loss.backward()
    for name, tensor in named:
        if tensor.grad is None or not torch.isfinite(tensor.grad).all():
            fail(f"{name} received no finite gradient: is that layer used in forward()?")
    grads = [t.grad for t in tensors]
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    if norm == 0:
        fail(f"all gradients of {spec.class_name} are zero: the loss does not depend on the "
             f"weights")
    before, best = loss.item(), loss.item()
    with torch.no_grad():
        for length in STEP_LENGTHS:  # try a step, undo it
            torch._foreach_add_(tensors, grads, alpha=-length / norm)
            best = min(best, F.cross_entropy(net(x), labels).item())
            torch._foreach_add_(tensors, grads, alpha=length / norm)
    if not best < before * (1 - MIN_DECREASE):
        fail(f"a gradient step did not lower {spec.class_name}'s loss on a batch of "
             f"{len(labels)} images ({before:.4f} -> {best:.4f}): check that forward() uses "
             f"every layer once, in order, with ReLUs")
    return (f"{spec.class_name}: every parameter gets a gradient; loss on {len(labels)} images "
            f"{before:.3f} -> {best:.3f} after one gradient step")


# ----------------------------------------------------------------------------- accuracy
def structure(spec: ModelSpec, paper: Graph, small: Graph | Inventory) -> None:
    """The accuracy part's gate: the paper's layers in both configurations (``small``: the
    (1, 10) network's graph at the paper's size, or what its constructor built), ReLUs by
    data flow, and the paper's computation."""
    parameters(spec, paper)
    parameters(spec, small)
    for problem in (nonlinearity_problem(paper), equivalence_problem(paper, spec.key)):
        if problem:
            fail(problem)


def _mean_loss(net: nn.Module, split: tuple[torch.Tensor, torch.Tensor], size: int,
               device: torch.device) -> float:
    net.eval()
    images, labels = split
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(labels), 250):
            x = prepare_batch(images[start:start + 250].to(device), size)
            total += F.cross_entropy(net(x).float(), labels[start:start + 250].to(device),
                                     reduction="sum").item()
    return total / len(labels)


def trained(spec: ModelSpec, small: Graph, profile: str, seed: int | None = None
            ) -> tuple[float, float, float, float]:
    """Train the rebuilt (1, 10) network with the grader's recipe for ``profile``.

    Returns (loss on the training images before, after, test accuracy, seconds). A
    network that computes what an earlier one computed gets the earlier result, seconds
    included, from the training cache (``cnn_grader.training_cache``, where one is set).
    Under ``classrun`` on GPUs the training itself runs in a Ray task with the model's
    GPU share (``cnn_grader.training_tasks``); the lookup stays here, so a network the
    cache knows, or one another worker is training, holds no GPU.
    """
    sent = training_tasks.configured()
    cuda = training_tasks.probed_device() == "cuda" if sent else torch.cuda.is_available()
    device = training_device(profile, cuda, gpu_required())
    plan = grading_recipe(spec.key, profile)
    key = training_cache.key(small, spec.key, profile, plan, seed, device.type)
    with training_cache.claimed(key) as cached:
        if cached is not None:
            return cached
        if sent:  # counts its seconds
            result = training_tasks.request(spec.key, small, profile, seed, device.type)
        else:
            start = time.perf_counter()
            try:
                result = train_once(spec, small, plan, profile, seed, device)
            finally:
                training_cache.add_training(time.perf_counter() - start)
        training_cache.store(key, result)
    return result


def training_device(profile: str, cuda: bool, require_gpu: bool) -> torch.device:
    """Where the grader trains: the GPU where ``cuda`` (one is visible), else the CPU,
    which a required GPU (``CNN_GRADER_REQUIRE_GPU``) or the profile full refuses."""
    if require_gpu and not cuda:
        raise RuntimeError(f"{REQUIRE_GPU_ENV} is set but no CUDA GPU is visible")
    if profile == "full" and not cuda:
        raise RuntimeError("the full grading profile needs a CUDA GPU")
    return torch.device("cuda" if cuda else "cpu")


def train_once(spec: ModelSpec, small: Graph, plan: GradingRecipe, profile: str,
               seed: int | None, device: torch.device) -> tuple[float, float, float, float]:
    """One training run of ``trained``, no cache: (loss before, after, test accuracy,
    seconds)."""
    recipe = plan.recipe if seed is None else replace(plan.recipe, seed=seed)
    prof = get_profile(profile)
    images, labels = load_split(True, prof)
    test_images, test_labels = load_split(False, prof)
    train = (images[:plan.train_size], labels[:plan.train_size])
    test = (test_images[:plan.test_size], test_labels[:plan.test_size])
    seed_everything(recipe.seed)
    net = rebuilt(small, seed=recipe.seed).to(device)
    before = _mean_loss(net, train, recipe.image_size, device)
    start = time.perf_counter()
    try:
        history = fit(net, train, test, recipe, device=device, progress=False)
    except Exception as error:  # noqa: BLE001
        fail(f"training {spec.class_name} with the grader's recipe raised "
             f"{type(error).__name__}: {error}")
    seconds = time.perf_counter() - start
    return (before, _mean_loss(net, train, recipe.image_size, device), history.test_acc[-1],
            seconds)


CPU_NOTE = ("on a CPU (profile {profile}) this part checks that {name} computes the paper's "
            "network and that the grader's short training run lowers its loss; it does not "
            "measure a meaningful accuracy (that needs the GPU profile full)")


def accuracy(spec: ModelSpec, train: Graph, profile: str) -> str:
    """Training ``train`` (the (1, 10) network at the training size, after the gate
    ``structure``): the threshold on a GPU (full), a falling training loss else."""
    plan = grading_recipe(spec.key, profile)
    before, after, acc, seconds = trained(spec, train, profile)
    run = (f"the grader trained it ({plan.describe()}, {seconds:.0f} s): loss on its training "
           f"images {before:.3f} -> {after:.3f}, test accuracy {acc:.3f}")
    if profile == "full":
        if not acc >= plan.threshold:
            fail(f"{spec.class_name} reached only {acc:.3f} test accuracy with the grader's "
                 f"training recipe, too low for a working {spec.class_name}")
        return f"graded with profile full: {spec.class_name} computes the paper's network; {run}"
    note = CPU_NOTE.format(profile=profile, name=spec.class_name)
    if not after < before * (1 - MIN_TRAINING_DECREASE):
        fail(f"{note[0].upper()}{note[1:]}. {spec.class_name}'s loss on its training images did "
             f"not fall during that run ({before:.4f} -> {after:.4f})")
    return f"{note[0].upper()}{note[1:]}. It does: {run}"
