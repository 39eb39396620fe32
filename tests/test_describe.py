"""The sandboxed description runs the notebook's code as the kernel would: in the
notebook's folder (read-only, with the files submitted beside it), each cell interrupted
after its time limit with what it defined kept, and every piece of a model described on
its own (cnn_grader/describe.py, cnn_grader/describe_child.py)."""
from __future__ import annotations

import time

import nbformat
import pytest

from cnn_grader.describe import describe_submission
from cnn_grader.sandbox import Limits


GRADE = {"grade": False, "solution": True, "locked": False, "points": 0}


pytestmark = pytest.mark.usefixtures("sandbox_on")


TINY = """
import torch
from torch import nn
class {name}(nn.Module):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)
    def forward(self, x):
        return self.fc(x.mean((2, 3)))
"""


def notebook(*cells: tuple[str, str | None]) -> list:
    """Code cells; a grade_id makes one a model cell."""
    made = []
    for source, grade_id in cells:
        cell = nbformat.v4.new_code_cell(source)
        if grade_id:
            cell.metadata["nbgrader"] = {**GRADE, "grade_id": grade_id}
        made.append(cell)
    return made


def test_code_runs_in_a_scratch_copy_of_the_notebooks_folder(tmp_path):
    """As in the kernel: the files beside the notebook are there, what the code writes
    (a log folder before the class) stays in a copy that is thrown away."""
    (tmp_path / "widths.txt").write_text("7")
    cells = notebook(
        ('import os\nWIDTH = int(open("widths.txt").read())\nos.makedirs("runs")\n'
         'open("runs/log.txt", "w").write("started")\n'
         'assert WIDTH == 7 and open("runs/log.txt").read() == "started"\n'
         + TINY.format(name="AlexNet"), "alexnet_model"),
        (TINY.format(name="VGG16"), "vgg16_model"))
    results = describe_submission(cells, "ci", Limits(wall_seconds=120), folder=tmp_path)
    assert results["alexnet"].problem is None, results["alexnet"].problem
    assert results["alexnet"].graphs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["widths.txt"]


HELPERS = {  # modules and a package handed in beside the notebook
    "cnnblocks.py": "from torch import nn\ndef head(c, k):\n    return nn.Linear(c, k)\n",
    "layers/__init__.py": "from .pool import mean_pool\n",
    "layers/pool.py": "def mean_pool(x):\n    return x.mean((2, 3))\n",
}


def test_modules_and_packages_handed_in_beside_the_notebook_import(tmp_path):
    for name, source in HELPERS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    uses = (TINY.replace("import torch\n", "import torch\nfrom cnnblocks import head\n"
                         "from layers import mean_pool\n")
            .replace("nn.Linear(in_channels, num_classes)", "head(in_channels, num_classes)")
            .replace("x.mean((2, 3))", "mean_pool(x)"))
    cells = notebook((uses.format(name="AlexNet"), "alexnet_model"),
                     (uses.format(name="VGG16"), "vgg16_model"))
    results = describe_submission(cells, "ci", Limits(wall_seconds=120), folder=tmp_path)
    for key in ("alexnet", "vgg16"):
        assert results[key].problem is None and results[key].graphs, results[key].problem


def test_modes_are_described_with_the_cells_lines_in_the_sandbox(tmp_path):
    """As the kernel runs them: a dropout left on in eval mode is recorded with the cell's
    line, a forward under torch.no_grad() is described with gradients off, and a tuple
    with its first value as the logits (tests/test_modes.py has the cases)."""
    dropping = TINY.format(name="AlexNet").replace(
        "return self.fc(x.mean((2, 3)))",
        "x = torch.nn.functional.dropout(x.mean((2, 3)), 0.5)\n        return self.fc(x), x")
    no_grad = TINY.format(name="VGG16").replace("    def forward", "    @torch.no_grad()\n"
                                                "    def forward")
    cells = notebook((dropping, "alexnet_model"), (no_grad, "vgg16_model"))
    results = describe_submission(cells, "ci", Limits(wall_seconds=120), folder=tmp_path)
    for graph in results["alexnet"].graphs.values():
        assert graph.drops_in_eval == ("x = torch.nn.functional.dropout(x.mean((2, 3)), 0.5)",)
        assert graph.returns == "tuple"
    vgg = results["vgg16"]
    assert len(vgg.graphs) == 3, vgg.errors
    assert all(not node.grad for graph in vgg.graphs.values() for node in graph.nodes)


def test_a_slow_cell_is_interrupted_and_keeps_what_it_defined(tmp_path):
    """A training loop after the class in the model cell costs the model nothing; the
    cells after it run; the whole run stays near one cell limit, not the wall limit."""
    cells = notebook(
        (TINY.format(name="AlexNet") + "import time\nfor step in range(10**6):\n"
         "    time.sleep(0.01)\n", "alexnet_model"),
        ("import time\ntry:\n    while True:\n        time.sleep(1)\n"
         "except KeyboardInterrupt:\n    pass  # caught once: interrupted again\n"
         "while True:\n    time.sleep(1)\n", None),
        (TINY.format(name="VGG16"), "vgg16_model"))
    start = time.monotonic()
    results = describe_submission(cells, "ci", Limits(wall_seconds=120), cell_seconds=3,
                                  folder=tmp_path)
    seconds = time.monotonic() - start
    assert results["alexnet"].problem is None and results["alexnet"].graphs
    assert results["vgg16"].problem is None and results["vgg16"].graphs
    assert seconds < 60, seconds


def test_a_forward_that_hangs_keeps_the_constructors_inventory(tmp_path):
    source = TINY.format(name="AlexNet").replace(
        "return self.fc(", "while self.training:\n            pass\n        return self.fc(")
    cells = notebook((source, "alexnet_model"), (TINY.format(name="VGG16"), "vgg16_model"))
    result = describe_submission(cells, "ci", Limits(wall_seconds=120), cell_seconds=3,
                                 folder=tmp_path)["alexnet"]
    assert result.problem is None and result.inventories and not result.graphs
    assert all("training mode did not finish in time" in e for e in result.errors.values())
    assert len(result.errors) == 3


def test_a_network_that_fails_at_one_size_keeps_the_others(tmp_path):
    """Without a way to accept 32x32, VGG16's training-size description fails alone."""
    source = TINY.format(name="VGG16").replace(
        "return self.fc(x.mean((2, 3)))",
        "assert x.shape[-1] >= 64, 'too small'\n        return self.fc(x.mean((2, 3)))")
    cells = notebook((TINY.format(name="AlexNet"), "alexnet_model"), (source, "vgg16_model"))
    result = describe_submission(cells, "ci", Limits(wall_seconds=120), folder=tmp_path)["vgg16"]
    assert set(result.graphs) == {(3, 1000, 224), (1, 10, 224)}
    assert "too small" in result.errors[(1, 10, 32)]
    assert "line" in result.errors[(1, 10, 32)]


def test_a_batch_size_read_as_a_number_is_followed_and_a_batch_dependent_forward_refused(
        tmp_path):
    """len(x) fixes the batch in a dynamic export: the grader exports at two batch sizes and
    keeps the graph where they differ only by the batch; a forward that computes something
    else for another batch is refused with its line."""
    by_len = TINY.format(name="AlexNet").replace(
        "return self.fc(x.mean((2, 3)))", "return self.fc(x.reshape(len(x), x.shape[1], -1)"
        ".mean(2))")
    branching = TINY.format(name="VGG16").replace(
        "return self.fc(x.mean((2, 3)))",
        "if len(x) == 2:\n            x = x * 2\n        return self.fc(x.mean((2, 3)))")
    cells = notebook((by_len, "alexnet_model"), (branching, "vgg16_model"))
    result = describe_submission(cells, "ci", Limits(wall_seconds=120), folder=tmp_path)
    alexnet = result["alexnet"].graphs[(3, 1000, 227)]
    view = next(node for node in alexnet.nodes if node.op in (
        "aten.view.default", "aten.reshape.default"))
    size = view.args[1][0]
    assert alexnet.node(size.name).op == "aten.sym_size.int", view
    assert not result["vgg16"].graphs
    for error in result["vgg16"].errors.values():
        assert "computes something different for a batch of 2 images" in error
        assert "`x = x * 2`" in error


def test_an_unfinished_stub_says_so(tmp_path):
    stub = ("from torch import nn\nclass AlexNet(nn.Module):\n"
            "    def __init__(self, in_channels=3, num_classes=1000):\n"
            "        super().__init__()\n        # YOUR CODE HERE\n"
            "        raise NotImplementedError()\n")
    cells = notebook((stub, "alexnet_model"), (TINY.format(name="VGG16"), "vgg16_model"))
    problem = describe_submission(cells, "ci", Limits(wall_seconds=120),
                                  folder=tmp_path)["alexnet"].problem
    assert "the cell is not finished: replace `raise NotImplementedError()`" in problem
    assert "line 6: `raise NotImplementedError()`" in problem


@pytest.mark.parametrize("replacement", [
    "os.mkfifo(events)",  # would block the grader's read for ever
    "os.symlink('/dev/zero', events)",  # would never end
    "os.symlink({hidden!r}, events)",  # a file of the grader's, echoed in a message
])
def test_the_grader_never_follows_what_the_code_put_in_place_of_its_output(tmp_path,
                                                                           replacement):
    """The describing process knows where its events go (its argv): code that replaces
    that file by a FIFO, a device or a link costs the models, never the grader's time
    or a read of another file."""
    hidden = tmp_path / "grader" / "hidden.jsonl"  # lines a reader of events would echo
    hidden.parent.mkdir()
    hidden.write_text('{"event": "model_error", "key": "alexnet", "message": "SECRET"}\n')
    folder = tmp_path / "notebook"
    folder.mkdir()
    cells = notebook(
        ("import os, sys\nevents = sys.argv[2]\nos.remove(events)\n"
         + replacement.format(hidden=str(hidden)) + "\nos._exit(0)\n", None),
        (TINY.format(name="AlexNet"), "alexnet_model"), (TINY.format(name="VGG16"), "vgg16_model"))
    start = time.monotonic()
    results = describe_submission(cells, "ci", Limits(wall_seconds=60), folder=folder)
    assert time.monotonic() - start < 60
    for key in ("alexnet", "vgg16"):
        assert results[key].problem and not results[key].graphs, results[key]
        assert "SECRET" not in results[key].problem
