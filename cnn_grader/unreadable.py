"""Submissions nbgrader cannot read: keep the file, grade a stand-in that says why.

nbgrader stops on a notebook that is not valid JSON (a truncated upload, a file saved
by another program) and the student gets no grade and no feedback. Before autograde,
``set_aside_unreadable`` renames such a file to ``<name>.unreadable`` (nothing is lost)
and puts the released assignment in its place with a first cell that says what
happened. The stand-in scores 0 like an untouched notebook, and its feedback explains.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

NOTE = ("**The grader could not read the notebook you submitted** ({error}). It is kept as "
        "`{kept}`; this stand-in (the assignment as released) was graded instead. Ask your "
        "instructor to look at the file.")


def unreadable_reason(path: Path) -> str | None:
    """None when ``path`` is a notebook nbformat can read, else why not."""
    try:
        nbformat.read(path, as_version=4)
    except Exception as error:  # noqa: BLE001 - JSON, schema and encoding errors alike
        return f"{type(error).__name__}: {str(error)[:200]}"
    return None


def set_aside_unreadable(course: Path, assignment: str) -> list[Path]:
    """Replace every unreadable submitted notebook of ``assignment``; return their paths."""
    released = course / "release" / assignment / f"{assignment}.ipynb"
    replaced = []
    for path in sorted((course / "submitted").glob(f"*/{assignment}/*.ipynb")):
        error = unreadable_reason(path)
        if error is None or not released.exists():
            continue
        kept = path.with_name(path.name + ".unreadable")
        path.rename(kept)
        stand_in = nbformat.read(released, as_version=4)
        stand_in.cells.insert(0, nbformat.v4.new_markdown_cell(NOTE.format(error=error,
                                                                          kept=kept.name)))
        nbformat.write(stand_in, path)
        replaced.append(path)
    return replaced
