"""What the grader reads from its environment, in one place (no heavy imports: the
scripts that only start nbgrader use it too)."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
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


@contextlib.contextmanager
def environment_set(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ for the block, then what was there before (for a Ray
    worker, which runs one task at a time and then the next in the same process)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
