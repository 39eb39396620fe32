"""Name a graph node in the student's terms: the module attribute and its PyTorch class,
or the function called in forward() and the line that called it. Never an ATen name."""
from __future__ import annotations

from .description import Graph, Node

# ATen operator (without namespace and overload) -> how a student writes it.
FUNCTIONS = {
    "conv2d": "a convolution (nn.Conv2d / F.conv2d)", "linear": "a linear layer (nn.Linear / F.linear)",
    "relu": "a ReLU", "clamp_min": "a clamp_min", "clamp": "a clamp", "threshold": "a threshold",
    "leaky_relu": "a leaky ReLU (nn.LeakyReLU / F.leaky_relu)", "gelu": "a GELU",
    "elu": "an ELU", "selu": "a SELU", "celu": "a CELU", "silu": "a SiLU", "mish": "a Mish",
    "hardtanh": "a hardtanh", "relu6": "a ReLU6", "hardswish": "a hardswish",
    "hardsigmoid": "a hardsigmoid", "tanh": "a tanh", "sigmoid": "a sigmoid",
    "softplus": "a softplus",
    "batch_norm": "a batch normalisation (nn.BatchNorm2d / F.batch_norm)",
    "layer_norm": "a layer normalisation (nn.LayerNorm)", "group_norm": "a group normalisation",
    "instance_norm": "an instance normalisation",
    "softmax": "a softmax (torch.softmax / F.softmax / nn.Softmax)", "_softmax": "a softmax",
    "log_softmax": "a log-softmax (F.log_softmax / nn.LogSoftmax)",
    "_log_softmax": "a log-softmax",
    "pad": "a padding (F.pad / nn.ZeroPad2d)", "constant_pad_nd": "a padding (F.pad)",
    "reflection_pad2d": "a reflection padding", "replication_pad2d": "a replication padding",
    "max_pool2d": "a max-pool (nn.MaxPool2d / F.max_pool2d)",
    "max_pool2d_with_indices": "a max-pool returning indices",
    "avg_pool2d": "an average pool (nn.AvgPool2d / F.avg_pool2d)",
    "avg_pool3d": "a 3-d average pool",
    "adaptive_avg_pool2d": "an adaptive average pool (nn.AdaptiveAvgPool2d)",
    "adaptive_max_pool2d": "an adaptive max-pool (nn.AdaptiveMaxPool2d)",
    "dropout": "a dropout", "feature_dropout": "a 2-d dropout (nn.Dropout2d)",
    "alpha_dropout": "an alpha dropout", "feature_alpha_dropout": "a feature alpha dropout",
    "detach": "a .detach()", "clone": "a .clone()", "contiguous": "a .contiguous()",
    "flatten": "a flatten that does not start at dimension 1",
    "view": "a view that is not a flatten to (batch, features)",
    "reshape": "a reshape that is not a flatten to (batch, features)",
    "squeeze": "a squeeze", "unsqueeze": "an unsqueeze", "permute": "a permute",
    "transpose": "a transpose", "slice": "a slice (x[...])", "select": "an index (x[...])",
    "expand": "an expand", "t": "a transpose (.t())",
    "add": "an addition (x + ...)", "sub": "a subtraction (x - ...)",
    "mul": "a multiplication (x * ...)", "div": "a division (x / ...)",
    "pow": "a power (x ** ...)", "neg": "a negation", "cat": "a concatenation (torch.cat)",
    "mean": "a mean (.mean())", "sum": "a sum (.sum())", "amax": "a maximum (.amax())",
    "matmul": "a matrix product (@ / torch.matmul)", "mm": "a matrix product",
    "addmm": "a matrix product with bias", "getitem": "an element of a tuple",
}


def base_name(op: str) -> str:
    """``aten.relu_.default`` -> ``relu`` (in-place forms as their function)."""
    if op == "getitem":
        return op
    name = op.split(".")[1] if op.count(".") >= 2 else op
    return name[:-1] if name.endswith("_") and not name.startswith("_") else name


def operation(node: Node) -> str:
    """What the node computes, in words a student knows ("a softmax (torch.softmax ...)")."""
    name = base_name(node.op)
    return FUNCTIONS.get(name, f"torch.{name}")


def short_class(path: str) -> str:
    """``torch.nn.modules.activation.Softmax`` -> ``nn.Softmax``; students' classes by name."""
    if path.startswith("torch.nn.modules."):
        return "nn." + path.rsplit(".", 1)[-1]
    if path.startswith("torchvision."):
        return path
    return path.rsplit(".", 1)[-1]


def where(node: Node, graph: Graph) -> str:
    """Where the student wrote it: ``self.classifier.7 (nn.Softmax)`` for a registered
    module, else ``forward(), line `x = F.softmax(x, 1)```."""
    if node.module and not node.module.startswith("_"):  # export's placeholders start with _
        cls = graph.module_class(node.module)
        return f"self.{node.module}" + (f" ({short_class(cls)})" if cls else "")
    return "forward()" + (f", line `{node.line}`" if node.line else "")


def located(node: Node, graph: Graph) -> str:
    """``a softmax (...) at self.classifier.7 (nn.Softmax)``."""
    return f"{operation(node)} at {where(node, graph)}"
