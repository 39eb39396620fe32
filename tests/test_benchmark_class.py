"""scripts/benchmark_class.py's report: the speed-up bound from the machine's busy time,
and a run whose grades differ from sequential grading is flagged."""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark_class  # noqa: E402


def run(wall: float, cpu: float, points: dict[str, float], training: float) -> dict:
    return {"wall_seconds": wall, "cpu_seconds": cpu, "kernel_seconds": 1.0,
            "description_seconds": 1.0, "checks_seconds": 1.0, "trained": 1, "cached": 0,
            "training_seconds": training, "points": points}


def test_the_bound_comes_from_the_sequential_runs_busy_cores(monkeypatch):
    monkeypatch.setattr(benchmark_class.os, "cpu_count", lambda: 2)
    runs = {"sequential": run(600, 960, {"a": 100.0, "b": 0.0}, 100),
            "classrun, 2 workers": run(400, 760, {"a": 100.0, "b": 0.0}, 8)}
    text = benchmark_class.report(runs, {"a": 100.0, "b": 0.0})
    assert "| classrun, 2 workers | 400 s | 1.50 | 1.90 |" in text
    assert "(8%)" in text
    assert "1.60 of its 2 cores on average" in text
    assert "no number of workers can be more than 1.25 times as fast" in text
    assert "expectations: none" in text


def test_different_grades_are_flagged(monkeypatch):
    runs = {"sequential": run(600, 960, {"a": 100.0}, 100),
            "classrun, 1 worker": run(500, 800, {"a": 90.0}, 10)}
    text = benchmark_class.report(runs, {"a": 95.0})
    assert text.splitlines()[3].endswith("| NO |")
    assert "expectations: {'a': (95.0, 100.0)}" in text


def test_busy_time_counts_work_done_meanwhile():
    times: dict = {}
    with benchmark_class.measured(times):
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass
    assert times["wall_seconds"] >= 0.3
    assert times["cpu_seconds"] >= 0.25  # the machine's, so at least this process's work
