"""The course's nbgrader preprocessors: what students get contains nothing instructor-only.

``generate_assignment``: ``DropMasterOnlyCells`` removes cells tagged ``master-only``
(notes about the master's stored run), ``DropTestMarkers`` nbval's marker lines and
``ClearRunMetadata`` the traces of that run
(cell execution times, the progress bars' saved widget state), as
scripts/generate_exercises.py does for exercises.

``autograde``: ``Preflight`` refuses to grade on a machine that cannot (no sandbox, no data
of the grading profile, no GPU where one is required), wherever autograde was started:
the command line checks this already in nbgrader_config.py, the Formgrader's autograde
button only here. ``RestoreDeletedTests`` puts a deleted test cell back after the nearest
earlier cell of the master that the submission still has. nbgrader 0.9.6's own
re-insertion only looks for a preceding grade or solution cell and crashes (KeyError)
when a locked explanation cell stands in between, as it does in this assignment.
``StartDescribing``, ``SandboxedExecute`` and ``GradeOutsideKernel`` grade outside the
student's kernel (grader/README.md).

``generate_feedback``: ``ShortenErrors`` replaces each traceback with the error's one-line
message (the check's own words to the student).
"""
import math
import time
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from pathlib import Path

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import from_dict
from nbformat.v4 import new_markdown_cell, new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor, OverwriteCells
from traitlets import Bool, Float, Unicode

from cnn_course import get_profile
from cnn_grader.describe import describe_submission
from cnn_grader.grading_record import Record, write_record
from cnn_grader.hidden_checks.runner import GraderError, Submission, run_checks
from cnn_grader.preflight import refusal
from cnn_grader.sandbox import Limits
from cnn_grader.sandboxed_kernel import SandboxedKernelManager
from cnn_grader import training_cache

MASTER_ONLY_TAG = "master-only"
DESCRIPTION = "cnn_course_description"  # resources key: (future of the description, profile)
KERNEL_SECONDS = "cnn_course_kernel_seconds"  # resources key: how long the kernel ran
BUDGET = "cnn_course_budget"  # resources key: (time.monotonic() deadline, budget in seconds)


def _timed(function, *args):
    """``(function(*args), seconds it took)``."""
    start = time.perf_counter()
    return function(*args), time.perf_counter() - start


class DropMasterOnlyCells(NbGraderPreprocessor):
    """Remove every cell tagged ``master-only``."""

    def preprocess(self, nb, resources):
        nb.cells = [cell for cell in nb.cells
                    if MASTER_ONLY_TAG not in cell.get("metadata", {}).get("tags", [])]
        return nb, resources


class DropTestMarkers(NbGraderPreprocessor):
    """Remove nbval's marker lines (``# NBVAL_IGNORE_OUTPUT`` ...), there for the course's
    own notebook tests, from every code cell, before nbgrader computes the checksums."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            lines = cell.source.splitlines()
            kept = [line for line in lines if not line.strip().startswith("# NBVAL_")]
            if len(kept) != len(lines):
                cell.source = "\n".join(kept)
        return cell, resources


RUN_METADATA = ("execution", "collapsed", "scrolled")  # cell metadata of one run


class ClearRunMetadata(NbGraderPreprocessor):
    """Remove what describes the master's last run: cell timings and saved widget state."""

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)
        for cell in nb.cells:
            for key in RUN_METADATA:
                cell.metadata.pop(key, None)
        return nb, resources


class ShortenErrors(NbGraderPreprocessor):
    """Keep only ``ErrorName: message`` of every error output."""

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


class Preflight(NbGraderPreprocessor):
    """Stop before a submission is graded when this machine cannot grade it fairly.

    A refused submission stays ungraded ("needs autograding"), never a zero. The first
    successful check holds for the rest of the process.
    """

    require_gpu = Bool(False, help="refuse to grade without a CUDA GPU").tag(config=True)
    _ready = False

    def preprocess(self, nb, resources):
        if not Preflight._ready:
            message = refusal(self.require_gpu)
            if message:
                raise RuntimeError(message)
            Preflight._ready = True
        return nb, resources


class RestoreDeletedTests(OverwriteCells):
    """OverwriteCells whose ``add_missing_cells`` tolerates locked cells between tests
    and duplicated cells (DeduplicateIds leaves them an empty ``nbgrader`` dict, on which
    nbgrader's own re-insertion of task cells raises KeyError)."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if cell.get("metadata", {}).get("nbgrader", None) == {}:
                del cell.metadata["nbgrader"]
        return super().preprocess(nb, resources)

    def add_missing_grade_cells(self, nb, resources):
        master = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        order = [cell.name for cell in master.source_cells]
        sources = {cell.name: cell for cell in master.source_cells}
        solutions = {cell.name for cell in master.solution_cells}
        for grade_cell in sorted(master.grade_cells, key=lambda cell: order.index(cell.name)):
            where = {cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"): index
                     for index, cell in enumerate(nb.cells)}
            if grade_cell.name in where:
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook",
                             grade_cell.name)
            earlier = order[:order.index(grade_cell.name)]
            after = max((where[name] for name in earlier if name in where), default=-1)
            restored = self.missing_cell_transform(sources[grade_cell.name], grade_cell.max_score,
                                                   is_solution=grade_cell.name in solutions)
            nb.cells.insert(after + 1, from_dict(restored))
        return nb, resources


class SandboxedExecute(Execute):
    """nbgrader's Execute with the kernel in the sandbox, surviving a kernel that dies,
    within the submission's time budget.

    The kernel only shows students their own outputs: grades come from
    ``GradeOutsideKernel``. When the kernel dies (``os._exit``, a crash, memory), the
    cell says so, the remaining cells are marked as not run, and grading goes on. A cell
    still running when the budget (``StartDescribing``) is spent is interrupted, and the
    cells after it are marked as not run, saying why.
    """

    _deadline = _budget = math.inf  # set per notebook from StartDescribing's budget

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)
        self.timeout_func = self._cell_timeout

    def _cell_timeout(self, cell) -> int | None:
        """The cell's limit: ``timeout``, or less where the budget ends sooner."""
        left = self._deadline - time.monotonic()
        limit = self.timeout if self.timeout and self.timeout > 0 else math.inf
        return None if math.isinf(min(limit, left)) else max(1, math.ceil(min(limit, left)))

    def preprocess(self, nb, resources=None, km=None):
        self._dead = False
        self._deadline, self._budget = (resources or {}).get(BUDGET, (math.inf, math.inf))
        start = time.perf_counter()
        try:
            return super().preprocess(nb, resources, km)
        except (DeadKernelError, CellTimeoutError):  # again, while stopping the kernel
            return nb, resources
        finally:
            if resources is not None:
                resources[KERNEL_SECONDS] = time.perf_counter() - start

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._dead:
            cell.outputs = [new_output("stream", name="stdout",
                                       text="(not run: the kernel stopped in an earlier cell)\n")]
            return cell, resources
        if time.monotonic() >= self._deadline:
            cell.outputs = [new_output("stream", name="stdout", text=(
                f"(not run: this submission's time budget of {self._budget:.0f} s was spent; "
                "your grades come from the grader's own run of your code, not from this "
                "kernel)\n"))]
            return cell, resources
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except (DeadKernelError, CellTimeoutError) as error:
            self._dead = True
            why = ("the kernel died while running this cell" if isinstance(error, DeadKernelError)
                   else "this cell ran past its time limit and did not stop when interrupted")
            cell.outputs.append(new_output("error", ename="KernelStopped", evalue=why,
                                           traceback=[f"KernelStopped: {why}"]))
            return cell, resources
        interrupted = any(o.get("ename") in ("KeyboardInterrupt", "CellTimeoutError")
                          for o in cell.get("outputs", []))
        if interrupted and time.monotonic() >= self._deadline:
            cell.outputs.append(new_output("stream", name="stdout", text=(
                f"(stopped: this submission's time budget of {self._budget:.0f} s was spent "
                "while this cell ran)\n")))
        return cell, resources


class StartDescribing(NbGraderPreprocessor):
    """Start describing the submission's networks in the sandbox, alongside the kernel.

    The notebook's code runs once more in a sandboxed process that writes a plain-data
    description of each network (cnn_grader/describe.py); it runs in a background thread
    while the kernel executes the notebook, and ``GradeOutsideKernel`` waits for it. Both
    end within ``budget_seconds`` from here: the submission's time budget.
    """

    profile = Unicode("", help="grading profile (empty: CNN_COURSE_PROFILE or the default)"
                      ).tag(config=True)
    describe_seconds = Float(300.0, help="wall-clock limit of one sandboxed run").tag(config=True)
    budget_seconds = Float(600.0, help="time budget of the submission's code: the kernel's "
                           "cells and the description end by then").tag(config=True)
    cell_seconds = Float(30.0, help="a cell is interrupted after this long, as in the kernel"
                         ).tag(config=True)

    def preprocess(self, nb, resources):
        profile = get_profile(self.profile or None).name
        limits = Limits(wall_seconds=self.describe_seconds,
                        cpu_seconds=int(self.describe_seconds) * 2)
        folder = resources.get("metadata", {}).get("path") or None
        deadline = time.monotonic() + self.budget_seconds
        resources[BUDGET] = (deadline, self.budget_seconds)
        pool = ThreadPoolExecutor(max_workers=1)
        resources[DESCRIPTION] = (pool.submit(_timed, describe_submission, deepcopy(nb.cells),
                                              profile, limits, self.cell_seconds, folder,
                                              deadline),
                                  profile)
        pool.shutdown(wait=False)
        return nb, resources


HOW_IT_RAN = (
    "**How your notebook ran for grading** (profile `{profile}`): in a sandbox on the CPU, "
    "with no GPU and no network, each cell for at most {cell} s and all of them for at most "
    "{budget} s; cells past that were skipped. The outputs below are your code's, but your "
    "grades do not come from them: the grader ran your code again on its own, and each "
    "test cell shows the result of its check of the network your code builds.")


class GradeOutsideKernel(NbGraderPreprocessor):
    """Score every test cell from the hidden checks, run outside the student's kernel.

    The hidden pytest checks run here, on networks rebuilt from the descriptions that
    ``StartDescribing`` asked for. Each test cell's outputs are replaced by its check's
    result (one line on success, the message as an error on failure), which nbgrader's
    GetGrades then scores. So nothing the notebook printed, warned or changed in its
    kernel affects a grade. A first cell tells the student how the notebook ran.
    """

    cell_seconds = Float(30.0, help="the kernel's limit per cell, as the student is told"
                         ).tag(config=True)
    record_folder = Unicode("", help="where each submission's grading record goes "
                            "(grading_record.py), for the class report; empty: nowhere"
                            ).tag(config=True)

    def preprocess(self, nb, resources):
        future, profile = resources.pop(DESCRIPTION)
        _deadline, budget = resources[BUDGET]  # both set by StartDescribing
        note = new_markdown_cell(HOW_IT_RAN.format(profile=profile, cell=f"{self.cell_seconds:.0f}",
                                                   budget=f"{budget:.0f}"))
        if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
            del note["id"]  # cell ids came with nbformat 4.5 (Colab saves 4.0)
        nb.cells.insert(0, note)
        models, describing = future.result()
        cached, fresh = training_cache.counts()
        trained_before = training_cache.training_seconds()
        results, checking = _timed(run_checks, Submission(models, profile))
        hits, misses = training_cache.counts()
        trained = training_cache.training_seconds() - trained_before
        if self.record_folder:
            write_record(Path(self.record_folder), Record(
                student=resources["nbgrader"]["student"],
                assignment=resources["nbgrader"]["assignment"], profile=profile,
                parts={grade_id: {"passed": r.passed, "message": r.message, "rule": r.rule}
                       for grade_id, r in results.items()},
                seconds={"kernel": resources.get(KERNEL_SECONDS, math.nan),
                         "description": describing, "checks": checking, "training": trained},
                trainings_cached=hits - cached, trainings_run=misses - fresh))
        self.log.info("graded with profile %s: kernel %.1f s and description %.1f s (side by "
                      "side), hidden checks %.1f s; %d of %d parts passed; training: %d cached, "
                      "%d trained in %.1f s", profile, resources.get(KERNEL_SECONDS, float("nan")),
                      describing, checking, sum(r.passed for r in results.values()),
                      len(results), hits - cached, misses - fresh, trained)
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            result = results.get(meta.get("grade_id"))
            if result is None:
                raise GraderError(f"no hidden check scores the test cell {meta.get('grade_id')!r}")
            if result.passed:
                cell.outputs = [new_output("stream", name="stdout", text=result.message + "\n")]
            else:
                cell.outputs = [new_output("error", ename="AssertionError",
                                           evalue=result.message,
                                           traceback=[f"AssertionError: {result.message}"])]
        return nb, resources
