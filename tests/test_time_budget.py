"""One time budget bounds a submission's code: the kernel's cells and the description end
by its deadline, and cells past it say why they did not run (course_preprocessors.py,
describe.py). Grades come from the description, so they do not depend on the kernel."""
from __future__ import annotations

import time

import nbformat
import pytest

from cnn_grader.course_preprocessors import BUDGET, SandboxedExecute
from cnn_grader.describe import BUDGET_SPENT, describe_submission
from cnn_grader.sandbox import Limits
from test_describe import TINY, notebook


pytestmark = pytest.mark.usefixtures("sandbox_on")


def texts(cell) -> str:
    return "".join(o.get("text", "") + o.get("ename", "") for o in cell.outputs)


def test_cells_past_the_budget_are_skipped_and_say_why(tmp_path):
    """A cell that would sleep for 10 minutes under a budget of 10 s (the kernel's start
    included): the cells before it run, it is interrupted at the deadline and says why,
    the cells after it are skipped and say why; all well before its 30 s cell limit."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import time; print('before')"),
        nbformat.v4.new_code_cell("time.sleep(600)"),
        *[nbformat.v4.new_code_cell(f"print('after {i}')") for i in range(3)]])
    execute = SandboxedExecute(timeout=30, interrupt_on_timeout=True)
    start = time.monotonic()
    resources = {"metadata": {"path": str(tmp_path)}, BUDGET: (start + 10, 10.0)}
    nb, _ = execute.preprocess(nb, resources)
    seconds = time.monotonic() - start
    outputs = [texts(cell) for cell in nb.cells]
    assert outputs[0] == "before\n", outputs
    assert "was spent while this cell ran" in outputs[1], outputs
    skipped = "not run: this submission's time budget of 10 s was spent"
    assert all(skipped in text and "after" not in text for text in outputs[2:]), outputs
    assert seconds < 10 + 10, seconds  # the budget, then the interrupt and the shutdown


def test_without_a_budget_every_cell_runs(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"print('cell {i}')") for i in range(3)])
    nb, _ = SandboxedExecute(timeout=30).preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    assert [texts(c) for c in nb.cells] == ["cell 0\n", "cell 1\n", "cell 2\n"]


def test_the_description_ends_by_the_deadline(tmp_path):
    """A cell before the models that sleeps past the budget: the description stops at the
    deadline (not at its own wall limit, nor after its retries), and says why."""
    cells = notebook(("import time\ntime.sleep(600)", None),
                     (TINY.format(name="AlexNet"), "alexnet_model"),
                     (TINY.format(name="VGG16"), "vgg16_model"))
    start = time.monotonic()
    results = describe_submission(cells, "ci", Limits(wall_seconds=120), cell_seconds=300,
                                  folder=tmp_path, deadline=start + 6)
    seconds = time.monotonic() - start
    assert seconds < 6 + 5, seconds
    for key in ("alexnet", "vgg16"):
        assert results[key].problem and not results[key].graphs, results[key]


def test_a_budget_spent_before_describing_says_so(tmp_path):
    cells = notebook((TINY.format(name="AlexNet"), "alexnet_model"),
                     (TINY.format(name="VGG16"), "vgg16_model"))
    results = describe_submission(cells, "ci", Limits(wall_seconds=120), folder=tmp_path,
                                  deadline=time.monotonic() - 1)
    assert all(BUDGET_SPENT in results[key].problem for key in ("alexnet", "vgg16"))


def test_a_budget_that_is_not_reached_changes_nothing(tmp_path):
    cells = notebook((TINY.format(name="AlexNet"), "alexnet_model"),
                     (TINY.format(name="VGG16"), "vgg16_model"))
    results = describe_submission(cells, "ci", Limits(wall_seconds=120), folder=tmp_path,
                                  deadline=time.monotonic() + 300)
    assert all(results[key].problem is None and results[key].graphs
               for key in ("alexnet", "vgg16"))


@pytest.mark.parametrize("minor", [0, 5])  # Colab saves nbformat 4.0, without cell ids
def test_the_feedback_opens_with_how_the_notebook_ran(monkeypatch, minor):
    from concurrent.futures import Future

    from cnn_grader import course_preprocessors

    monkeypatch.setattr(course_preprocessors, "run_checks", lambda submission: {})
    described = Future()
    described.set_result(({}, 0.5))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nb.nbformat_minor = minor
    if minor < 5:
        del nb.cells[0]["id"]
    resources = {course_preprocessors.DESCRIPTION: (described, "cpu"),
                 BUDGET: (time.monotonic(), 600.0)}
    nb, _ = course_preprocessors.GradeOutsideKernel(cell_seconds=30).preprocess(nb, resources)
    note = nb.cells[0]
    assert note.cell_type == "markdown" and ("id" in note) == (minor >= 5)
    assert ("(profile `cpu`): in a sandbox on the CPU, with no GPU and no network, each cell "
            "for at most 30 s and all of them for at most 600 s") in note.source
    nbformat.validate(nb)
