"""Build the folder handed to students: materials without solutions or grader files.

    python scripts/build_student_bundle.py OUT_DIR

Copies lectures/, exercises/, assignments/, the helper package, the JupyterLab settings
(lab/), the set-up files, and the students' own README and Makefile (`make lab` only).
Each folder's README is the student text from scripts/student/ followed by a list of the
folder's notebooks and their titles. Refuses (exit 1) if anything instructor-only slipped
in, including a README that points at what the bundle does not ship.
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
INSTRUCTOR_ONLY = ("grader", "solutions", "tests", "scripts")
SKIP = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.egg-info")
FORBIDDEN_TEXT = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "hidden_checks")
# What a student README must not point at: folders and commands the bundle does not have.
README_FORBIDDEN = re.compile(r"solutions/|make test|scripts/|grader/|regenerat", re.I)


def build(out: Path) -> Path:
    """Write the bundle into ``out`` (replaced if it exists)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, out / folder, ignore=SKIP)
    for name in FILES:
        shutil.copy(ROOT / name, out / name)
    for name in STUDENT_FILES:
        shutil.copy(STUDENT / name, out / name)
    for folder, name in STUDENT_READMES.items():
        text = (STUDENT / name).read_text(encoding="utf-8")
        (out / folder / "README.md").write_text(text + notebook_list(out / folder),
                                                encoding="utf-8")
    return out


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
        if rel.parts[0] in INSTRUCTOR_ONLY or "nbgrader_config" in rel.name:
            found.append(f"{rel}: instructor-only file")
            continue
        if path.suffix not in (".py", ".ipynb", ".md", ".txt", ".yml", ".toml"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{rel}: contains {marker!r}" for marker in FORBIDDEN_TEXT if marker in text]
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
