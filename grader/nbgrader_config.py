"""nbgrader configuration of the CNN course. Run nbgrader from this folder, with the
course's venv first on PATH (creating the gradebook calls `alembic` from PATH):

    cd grader && PATH="$PWD/../.venv/bin:$PATH" nbgrader autograde assignment_cnn

Settings an instructor may change are the upper-case names below.
"""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Gradebook: nbgrader's default SQLite file grader/gradebook.db, unless
# NBGRADER_DB_URL names another SQLAlchemy URL (e.g. postgresql://user@host/cnn).
GRADEBOOK_URL = os.environ.get("NBGRADER_DB_URL") or f"sqlite:///{HERE / 'gradebook.db'}"

# True: refuse to autograde without a CUDA GPU (accuracy is then always graded with the
# `full` profile). False: without a GPU the accuracy parts use the cpu profile (or the one
# CNN_COURSE_PROFILE names) and the feedback says which profile graded.
REQUIRE_GPU = os.environ.get("CNN_GRADER_REQUIRE_GPU", "") not in ("", "0")

# Per-cell time limits in seconds (nbgrader's default is 30 s for every cell).
TIMEOUTS = {"accuracy": 1800, "trainable": 300, "check": 180, "other": 60}


def cell_timeout(cell) -> int:
    """Generous limits for the cells that train, tight ones elsewhere."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    grade_id = meta.get("grade_id", "")
    if meta.get("grade") and not meta.get("solution"):
        for part in ("accuracy", "trainable"):
            if grade_id.endswith(part):
                return TIMEOUTS[part]
        return TIMEOUTS["check"]
    return TIMEOUTS["other"]


if REQUIRE_GPU and "autograde" in sys.argv[1:2]:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "grader/nbgrader_config.py: REQUIRE_GPU is set (CNN_GRADER_REQUIRE_GPU) but no CUDA "
            "GPU is visible: autograde refuses to run. Unset it to grade with the cpu profile."
        )

# The autograde kernel imports the hidden checks from grader/ and the helper package.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
)
if REQUIRE_GPU:
    os.environ["CNN_GRADER_REQUIRE_GPU"] = "1"

sys.path.insert(0, str(HERE))
from course_preprocessors import (  # noqa: E402
    ClearRunMetadata, DropMasterOnlyCells, HideHiddenTests, RestoreDeletedTests, ShortenErrors,
)
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.converters import Autograde, GenerateAssignment  # noqa: E402
from nbgrader.preprocessors import GetGrades, OverwriteCells  # noqa: E402


def defaults(converter, trait: str) -> list:
    """nbgrader's default preprocessor list of ``converter``."""
    return converter.class_traits()[trait].default()


c = get_config()  # noqa: F821 (provided by nbgrader)
c.CourseDirectory.root = str(HERE)
c.CourseDirectory.course_id = "cnn-course"
c.CourseDirectory.db_url = GRADEBOOK_URL

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
# Notes about the master's own stored run never reach students.
c.GenerateAssignment.preprocessors = [DropMasterOnlyCells, ClearRunMetadata,
                                      *defaults(GenerateAssignment, "preprocessors")]

c.Execute.timeout_func = cell_timeout
c.Execute.interrupt_on_timeout = True

# A deleted test cell is put back from the gradebook and graded, not scored 0 silently
# (RestoreDeletedTests replaces nbgrader's OverwriteCells; its docstring says why).
c.OverwriteCells.add_missing_cells = True
c.Autograde.sanitize_preprocessors = [
    RestoreDeletedTests if step is OverwriteCells else step
    for step in defaults(Autograde, "sanitize_preprocessors")
]

# Feedback: the hidden test code and the tracebacks through it stay with the instructor;
# students see each failed check's message.
c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, HideHiddenTests,
                                    ShortenErrors]
