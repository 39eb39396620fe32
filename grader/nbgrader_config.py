"""nbgrader configuration of the CNN course. Run nbgrader from this folder, with the
course's venv first on PATH (creating the gradebook calls `alembic` from PATH):

    cd grader && PATH="$PWD/../.venv/bin:$PATH" nbgrader autograde assignment_cnn

Settings an instructor may change are the upper-case names below.
"""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The grader's code is the package cnn_grader at the repository's root.
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from cnn_grader.environment import gpu_required  # noqa: E402

# Training cache: the accuracy part's training results, by the computation trained
# (grader/CHECKS.md, "Training cache"); CNN_GRADER_CACHE may name another folder, e.g. one
# that several grading machines share. Deleting the folder is always safe.
os.environ.setdefault("CNN_GRADER_CACHE", str(HERE / "cache"))

# True: refuse to autograde without a CUDA GPU (accuracy is then always graded with the
# `full` profile). False: without a GPU the accuracy parts use the cpu profile (or the one
# CNN_COURSE_PROFILE names) and the feedback says which profile graded.
REQUIRE_GPU = gpu_required()

# Time limits: about 5 times what the reference notebook needs, plus start-up (measured
# in grader/CHECKS.md, "Time limits"). The kernel only shows students their own outputs,
# so one limit fits every cell (the slowest, the imports, took 6 s); a sandboxed
# description of the reference took 15 s, 4 of them starting Python, torch and IPython.
CELL_TIMEOUT = 30
DESCRIBE_SECONDS = 120.0
# Time budget of a submission's code (grader/README.md, "What the sandbox protects"): its
# kernel and its description, side by side, end by then; cells still to run are skipped
# and say why. Grades come from the description, so a slow notebook keeps them. The
# hidden checks (the grader's own code) come after, in the time the profile's training takes.
TIME_BUDGET = 600.0

if "autograde" in sys.argv[1:2]:
    from cnn_grader.preflight import refusal  # noqa: E402

    message = refusal(REQUIRE_GPU)
    if message:
        raise SystemExit(f"grader/nbgrader_config.py: {message}")
    from cnn_grader.handed_in import refusal_line, set_aside_non_regular  # noqa: E402
    from cnn_grader.unreadable import set_aside_unreadable  # noqa: E402

    # Links, FIFOs, sockets and devices first: nbgrader's copy (and reading the notebooks
    # below) would follow or open them (cnn_grader/handed_in.py).
    for path, what, kept in set_aside_non_regular(HERE, "assignment_cnn"):
        print(f"[nbgrader_config] {refusal_line(path, what, kept)}", file=sys.stderr)

    for path in set_aside_unreadable(HERE, "assignment_cnn"):
        print(f"[nbgrader_config] {path} is not a readable notebook: kept as "
              f"{path.name}.unreadable, a stand-in that says so is graded", file=sys.stderr)

from cnn_grader.course_preprocessors import (  # noqa: E402
    ClearRunMetadata, DropMasterOnlyCells, DropTestMarkers, GradeOutsideKernel, Preflight,
    RestoreDeletedTests, SandboxedExecute, ShortenErrors, StartDescribing,
)
from cnn_grader.app_logging import quiet_server_log  # noqa: E402
from cnn_grader.describe import visible_paths as kernel_visible_paths  # noqa: E402
from cnn_grader.gradebook import gradebook_url  # noqa: E402
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.converters import Autograde, GenerateAssignment  # noqa: E402
from nbgrader.preprocessors import Execute, GetGrades, OverwriteCells  # noqa: E402

# Gradebook: nbgrader's default SQLite file grader/gradebook.db, unless
# NBGRADER_DB_URL names another SQLAlchemy URL (e.g. postgresql://user@host/cnn).
GRADEBOOK_URL = gradebook_url(HERE)


def defaults(converter, trait: str) -> list:
    """nbgrader's default preprocessor list of ``converter``."""
    return converter.class_traits()[trait].default()


c = get_config()  # noqa: F821 (provided by nbgrader)
c.CourseDirectory.root = str(HERE)
c.CourseDirectory.course_id = "cnn-course"
c.CourseDirectory.db_url = GRADEBOOK_URL
# The exchange (the Formgrader's Release and Collect) is a folder of the course, so that no
# system folder is needed; its contents are git-ignored (exchange/README.md says more).
c.Exchange.root = str(HERE / "exchange")
# `nbgrader zip_collect assignment_cnn` files an LMS download into submitted/: put the
# download (Canvas's "Download Submissions" zip, or its files) in
# downloaded/assignment_cnn/archive/. Canvas names each file
# <name>[_LATE]_<user id>_<submission id>_<file name>[-<n>].<ext>; <name> becomes the
# nbgrader student id, and a re-submission's "-<n>" is dropped. Any other LMS: a regular
# expression with the groups student_id and file_id, matched against the whole path.
# Files handed in beside the notebook (helper modules, notes, small data) come along.
c.FileNameCollectorPlugin.named_regexp = (
    r".*/(?P<student_id>[A-Za-z0-9]+)(?:_LATE)?(?:_\d+)+_(?P<file_id>[^/]+?)(?:-\d+)?\.[^./]+$")
c.FileNameCollectorPlugin.valid_ext = [".ipynb", ".py", ".txt", ".md", ".csv", ".json"]
c.ZipCollectApp.strict = True  # a notebook not named as released is skipped, and said so
# The Formgrader's reports at INFO, without DEBUG lines (unless the server was started
# with --debug): cnn_grader/app_logging.py says why.
quiet_server_log(sys.argv)

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
# Notes about the master's own stored run and nbval's markers never reach students.
c.GenerateAssignment.preprocessors = [DropMasterOnlyCells, DropTestMarkers, ClearRunMetadata,
                                      *defaults(GenerateAssignment, "preprocessors")]

# The notebook runs in a sandboxed kernel (the grader's files are not visible there) for
# the students' own outputs while, alongside, a sandboxed process describes its networks;
# GradeOutsideKernel then scores every test cell from the hidden checks, which run here
# on the networks rebuilt from those descriptions (grader/README.md).
c.Execute.timeout = CELL_TIMEOUT
c.Execute.interrupt_on_timeout = True
c.SandboxedExecute.timeout = CELL_TIMEOUT
c.SandboxedExecute.interrupt_on_timeout = True
c.StartDescribing.describe_seconds = DESCRIBE_SECONDS
c.StartDescribing.budget_seconds = TIME_BUDGET
c.StartDescribing.cell_seconds = CELL_TIMEOUT
c.GradeOutsideKernel.cell_seconds = CELL_TIMEOUT
c.GradeOutsideKernel.record_folder = str(HERE / "logs")  # for `make report`
c.SandboxedKernelManager.read_only = [str(p) for p in kernel_visible_paths()]
c.Autograde.autograde_preprocessors = [
    step for default in defaults(Autograde, "autograde_preprocessors")
    for step in ((StartDescribing, SandboxedExecute, GradeOutsideKernel) if default is Execute
                 else (default,))
]

# A deleted test cell is put back from the gradebook and graded, not scored 0 silently
# (RestoreDeletedTests replaces nbgrader's OverwriteCells; its docstring says why).
c.OverwriteCells.add_missing_cells = True
# Preflight first: the Formgrader's autograde button does not pass through the command
# line's check above, so every submission is checked (once per process, when it passes).
c.Preflight.require_gpu = REQUIRE_GPU
c.Autograde.sanitize_preprocessors = [Preflight] + [
    RestoreDeletedTests if step is OverwriteCells else step
    for step in defaults(Autograde, "sanitize_preprocessors")
]

# Feedback: students see each failed check's message, no tracebacks.
c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, ShortenErrors]
