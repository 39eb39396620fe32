"""scripts/gpu_session.sh refuses clearly where it cannot do its GPU work."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_session.sh"


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_unknown_step_is_refused_before_any_work(tmp_path):
    result = run("alexnet", "plots", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "unknown step 'plots' (valid: alexnet, share, benchmark, vgg16, sandbox)" in result.stdout
    assert not (tmp_path / "machine.txt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_refuses_without_a_gpu(tmp_path):
    result = run(tmp_path=tmp_path)
    assert result.returncode == 2
    assert "needs a CUDA GPU and none is visible" in result.stderr
    assert not list(tmp_path.glob("calibration*"))
