"""The pip and conda set-ups name the same packages and versions."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        match = re.fullmatch(r"\s*(?:-\s+)?([A-Za-z0-9_.-]+)==([^\s#]+)\s*", line)
        if match:
            found[match[1].lower()] = match[2]
    return found


def test_environment_yml_matches_requirements():
    pip = pins((ROOT / "requirements.txt").read_text().splitlines())
    conda_lines = (ROOT / "environment.yml").read_text().split("- pip:", 1)[1].splitlines()
    assert pip and pins(conda_lines) == pip
    for needed in ("jupyterlab", "torch", "torchvision", "nbgrader", "nbval", "matplotlib",
                   "pytest", "tqdm"):
        assert needed in pip
