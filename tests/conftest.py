"""Shared fixtures: tests run on the committed subset unless they say otherwise."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import pytest
import torch

os.environ.setdefault("CNN_COURSE_PROFILE", "ci")
# The grader (cnn_grader) is instructor-only, so not installed: import it from the root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Under pytest-xdist the workers share the cores: one torch thread each (two threads per
# worker on 2 cores measured 8 % slower and 25 % more CPU time on the rule tests, 2026-11-30).
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER")
                      else max(1, min(2, os.cpu_count() or 1)))
pytest_plugins = ["postgres"]  # postgres_url: a PostgreSQL database (tests/postgres.py)


# The longest modules first: the Makefile runs pytest-xdist with two workers and
# `--dist loadscope --no-loadscope-reorder`, so the end-to-end grading (minutes, much of it
# waiting for time limits) and the browser tests (`make test-integration`), or the
# fairness corpus (`make test`), start at once while the rest fills in around them.
FIRST = ("tests/test_grading_end_to_end.py", "tests/test_browser.py", "tests/test_fair_grading.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return FIRST.index(path) if path in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: the order within each module is kept

def in_ci() -> bool:
    """True in CI (`CI=true`, set by `.ci/run` and by CI services), where every system
    dependency of the suite is installed, so a missing one is a failure."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(reason: str) -> NoReturn:
    """A system dependency (bubblewrap, Chromium and its driver, the full FashionMNIST) is
    missing, as `reason` says (with what to install): fail in CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"CI=true and a dependency of this test is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def sandbox_on(monkeypatch):
    """The test runs students' code in the grader's sandbox: skipped where it cannot run
    (a failure in CI, ``require``), and switched on whatever the environment says."""
    from cnn_grader.sandbox import NO_SANDBOX_ENV, sandbox_problem

    problem = sandbox_problem()
    if problem is not None:
        require(f"the grader's sandbox cannot run here: {problem}")
    monkeypatch.delenv(NO_SANDBOX_ENV, raising=False)


@pytest.fixture(autouse=True)
def no_training_cache(monkeypatch):
    """Every test trains for real unless it names a cache folder: loading
    grader/nbgrader_config.py (test_preflight) sets CNN_GRADER_CACHE to the repository's
    grader/cache for the rest of the process, and a cached result there would answer a
    later test's training."""
    monkeypatch.delenv("CNN_GRADER_CACHE", raising=False)


@pytest.fixture
def no_download(monkeypatch):
    """Make torchvision's download fail as it does offline, and count the attempts."""
    from cnn_course import data

    calls = []

    def offline(root):
        calls.append(root)
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(data, "_download_with_torchvision", offline)
    return calls


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium under Selenium for the browser tests (tests/browser.py); skips,
    saying what to install, where Chromium, chromedriver or Selenium is missing (fails in CI)."""
    import browser

    reason = browser.missing_browser()
    if reason:
        require(reason)
    driver = browser.chrome()
    yield driver
    driver.quit()
