"""What the grader reads from its environment, in one place (no heavy imports: the
scripts that only start nbgrader use it too)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REQUIRE_GPU_ENV = "CNN_GRADER_REQUIRE_GPU"


def gpu_required() -> bool:
    """Whether the instructor requires a GPU: ``CNN_GRADER_REQUIRE_GPU`` set to anything
    but empty or 0."""
    return os.environ.get(REQUIRE_GPU_ENV, "").strip() not in ("", "0")


def venv_first(path: str) -> str:
    """``path`` (a PATH value) with this interpreter's folder first, so that nbgrader and
    the ``alembic`` it starts when it creates a gradebook are this venv's."""
    return f"{Path(sys.executable).parent}{os.pathsep}{path}"
