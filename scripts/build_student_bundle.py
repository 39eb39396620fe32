"""Build the folder handed to students: materials without solutions or grader files.

    python scripts/build_student_bundle.py OUT_DIR

Copies lectures/, exercises/, assignments/, the helper package, the set-up files, and a
student README and Makefile (`make lab` only), then refuses (exit 1) if anything instructor-only slipped in.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("lectures", "exercises", "assignments", "cnn_course")
FILES = ("requirements.txt", "environment.yml", "pyproject.toml")
STUDENT_FILES = ("README.md", "Makefile")  # from scripts/student/: students' own versions
# Instructor-only folders: present in the repository, never in the bundle.
INSTRUCTOR_ONLY = ("grader", "solutions", "tests", "scripts")
SKIP = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.egg-info")
FORBIDDEN_TEXT = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "hidden_checks")


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
        shutil.copy(ROOT / "scripts" / "student" / name, out / name)
    return out


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
