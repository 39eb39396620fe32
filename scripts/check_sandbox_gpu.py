"""On a GPU machine: the grader's sandboxes see no GPU (grader/README.md, "What the sandbox
protects"): the host's torch finds CUDA, torch in the sandbox does not. Exit 0 when so."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from cnn_grader.sandbox import run_sandboxed

PROBE = "import glob, torch; print(torch.cuda.is_available(), sorted(glob.glob('/dev/nvidia*')))"


def main() -> int:
    outcome = run_sandboxed([sys.executable, "-c", PROBE], read_only=[Path(sys.prefix)])
    inside = outcome.output.strip().splitlines()[-1] if outcome.output.strip() else "no output"
    print(f"host: CUDA {torch.cuda.is_available()}; sandbox: CUDA and /dev/nvidia* {inside}")
    return 0 if torch.cuda.is_available() and inside == "False []" else 1


if __name__ == "__main__":
    sys.exit(main())
