"""Build the folder handed to students: materials without solutions or grader files.

    python scripts/build_student_bundle.py OUT_DIR

Copies lectures/, exercises/, assignments/, the helper package, the JupyterLab settings
(lab/), the set-up files, and the students' own README and Makefile (`make lab` only).
Each folder's README is the student text from scripts/student/ followed by a list of the
folder's notebooks and their titles. The lectures' nbval markers (`# NBVAL_...` comment
lines, there for the course's own notebook tests) are dropped from the copies. Refuses
(exit 1) if anything instructor-only slipped in: solutions, hidden tests, instructor
files, a README that points at what the bundle does not ship, or a notebook that carries
a test-tool marker or mentions a folder or command students do not have.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("lectures", "exercises", "assignments", "cnn_course", "lab")
FILES = ("requirements.txt", "environment.yml", "pyproject.toml")
STUDENT = ROOT / "scripts" / "student"
STUDENT_FILES = ("README.md", "Makefile")  # from scripts/student/: students' own versions
# Folder -> its README's student text in scripts/student/ (replaces the instructors' README).
STUDENT_READMES = {"lectures": "lectures.md", "exercises": "exercises.md",
                   "assignments": "assignments.md"}
# Instructor-only folders: present in the repository, never in the bundle.
INSTRUCTOR_ONLY = ("grader", "cnn_grader", "solutions", "tests", "scripts")
SKIP = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.egg-info")
FORBIDDEN_TEXT = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "hidden_checks")
# What a student README must not point at: folders and commands the bundle does not have.
README_FORBIDDEN = re.compile(r"solutions/|make test|scripts/|grader/|docs/|regenerat", re.I)
# What a notebook must not mention: the same folders and commands, the course's test suite,
# and a repository students do not have; nor carry a test tool's marker (nbval's comments
# or tags).
NOTEBOOK_FORBIDDEN = re.compile(
    r"solutions/|make test|scripts/|grader/|docs/|tests/|this repository", re.I)
TEST_MARKER = re.compile(r"nbval", re.I)
# nbval's comment markers; the course's masters and lectures use them, students never see them.
NBVAL_MARKERS = ("# NBVAL_IGNORE_OUTPUT", "# NBVAL_CHECK_OUTPUT", "# NBVAL_SKIP",
                 "# NBVAL_RAISES_EXCEPTION")
# The students' own nbgrader settings (Validate: every cell, long cells), not the course's.
STUDENT_NBGRADER_CONFIG = Path("lab", "student", "nbgrader_config.json")


def build(out: Path) -> Path:
    """Write the bundle into ``out`` (replaced if it exists)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, out / folder, ignore=SKIP)
    for path in sorted((out / "lectures").glob("*.ipynb")):
        strip_test_markers(path)
    for name in FILES:
        shutil.copy(ROOT / name, out / name)
    for name in STUDENT_FILES:
        shutil.copy(STUDENT / name, out / name)
    for folder, name in STUDENT_READMES.items():
        text = (STUDENT / name).read_text(encoding="utf-8")
        (out / folder / "README.md").write_text(text + notebook_list(out / folder),
                                                encoding="utf-8")
    return out


def strip_test_markers(path: Path) -> None:
    """Drop nbval's comment lines from the code cells of the notebook at ``path``."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        lines = [line for line in source.splitlines(keepends=True)
                 if line.strip() not in NBVAL_MARKERS]
        cell["source"] = lines
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def notebook_text(path: Path) -> str:
    """What a student reads in a notebook: cell sources, tags and text outputs."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        parts.append("".join(cell["source"]))
        parts += cell.get("metadata", {}).get("tags", [])
        for output in cell.get("outputs", []):
            parts.append("".join(output.get("text", "")))
            parts.append("".join(output.get("data", {}).get("text/plain", "")))
            parts.append("".join(output.get("data", {}).get("text/markdown", "")))
    return "\n".join(parts)


def notebook_list(folder: Path) -> str:
    """A Markdown list of the notebooks in ``folder``, each with its title (first heading)."""
    lines = []
    for path in sorted(folder.glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "".join(next(c["source"] for c in cells if c["cell_type"] == "markdown"))
        lines.append(f"- `{path.name}`: {text.strip().splitlines()[0].lstrip('#').strip()}")
    return "\n".join(lines) + "\n"


def leaks(bundle: Path) -> list[str]:
    """Instructor-only material found in ``bundle``: one line per finding."""
    found = []
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        rel = path.relative_to(bundle)
        if rel.parts[0] in INSTRUCTOR_ONLY or (
                "nbgrader_config" in rel.name and rel != STUDENT_NBGRADER_CONFIG):
            found.append(f"{rel}: instructor-only file")
            continue
        if path.suffix not in (".py", ".ipynb", ".md", ".txt", ".yml", ".toml"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{rel}: contains {marker!r}" for marker in FORBIDDEN_TEXT if marker in text]
        if path.suffix == ".ipynb":
            text = notebook_text(path)
            found += [f"{rel}: mentions {hit!r}, which students do not have"
                      for hit in sorted({m.group(0) for m in NOTEBOOK_FORBIDDEN.finditer(text)})]
            found += [f"{rel}: carries the test-tool marker {hit!r}"
                      for hit in sorted({m.group(0) for m in TEST_MARKER.finditer(text)})]
        if rel.name.upper().startswith("README"):
            found += [f"{rel}: points at {hit!r}, which students do not have"
                      for hit in sorted({m.group(0) for m in README_FORBIDDEN.finditer(text)})]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (replaced if present)")
    bundle = build(parser.parse_args().out)
    problems = leaks(bundle)
    if problems:
        print("refusing: instructor-only material in the bundle:\n  " + "\n  ".join(problems))
        return 1
    print(f"student bundle written to {bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
