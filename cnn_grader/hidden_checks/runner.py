"""Run the hidden pytest checks (``test_parts.py``) on one submission's descriptions.

``run_checks(submission)`` returns ``{grade_id: PartResult}``. A failing assertion is
the student's (its message is their feedback); any other exception in a check is the
grader's own fault and raises ``GraderError``, so that no student gets a zero for it.
Results are cached per model and description within the process: the same network
gets the same grade, and a batch computes each distinct network once.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

CHECKS = Path(__file__).resolve().parent / "test_parts.py"
PACKAGE = CHECKS.parent.parent  # cnn_grader/


class GraderError(RuntimeError):
    """A check crashed for a reason that is not the student's."""


@dataclass(frozen=True)
class PartResult:
    passed: bool
    message: str  # the student-facing line: the summary, or what is wrong
    rule: str = ""  # for the instructor: the check that failed, "module.function"


@dataclass
class Submission:
    """What the checks see of one submission: its models' descriptions and the profile."""

    models: dict  # model key -> describe.ModelResult
    profile: str


_CACHE: dict[tuple[str, str, str], dict[str, PartResult]] = {}


def _fingerprint(result) -> str:
    return hashlib.sha256(result.fingerprint().encode()).hexdigest()


def _grade_id(item: pytest.Item) -> str:
    return f"{item.callspec.params['model']}_{item.get_closest_marker('part').args[0]}"


class _Plugin:
    """Gives the tests their fixtures and collects one result per grade_id."""

    def __init__(self, submission: Submission, models: set[str]) -> None:
        self._submission = submission
        self._models = models
        self.results: dict[str, PartResult] = {}
        self.summaries: dict[str, str] = {}
        self.internal: list[str] = []

    @pytest.fixture
    def submission(self) -> Submission:
        return self._submission

    @pytest.fixture
    def report(self, request):
        grade_id = _grade_id(request.node)

        def note(line: str) -> None:
            self.summaries[grade_id] = line
        return note

    def pytest_configure(self, config) -> None:
        config.addinivalue_line("markers", "part(name): the graded part a test scores")

    def pytest_collection_modifyitems(self, items: list) -> None:
        items[:] = [i for i in items if i.callspec.params["model"] in self._models]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        grade_id = _grade_id(item)
        if report.failed and grade_id not in self.results:
            error = call.excinfo.value
            if isinstance(error, (AssertionError, pytest.fail.Exception)):
                message = getattr(error, "msg", None) or str(error)
                self.results[grade_id] = PartResult(False, message.strip(),
                                                    failed_rule(call.excinfo))
            else:
                self.internal.append(f"{grade_id}: {type(error).__name__}: {error}")
        elif report.when == "call" and report.passed:
            self.results[grade_id] = PartResult(True, self.summaries.get(grade_id, "passed"))


def failed_rule(excinfo: pytest.ExceptionInfo) -> str:
    """The check that failed: the innermost function of the grader on the failure's way
    up (``checks.fail``, which only raises, left out), as "module.function"."""
    for entry in reversed(excinfo.traceback):
        path = Path(str(entry.path))
        if PACKAGE in path.parents and entry.name != "fail":
            return f"{path.stem}.{entry.name}"
    return ""


def run_checks(submission: Submission) -> dict[str, PartResult]:
    """Every part of every model: passed or not, with the message for the student."""
    results: dict[str, PartResult] = {}
    keys = {model: (model, submission.profile, _fingerprint(result))
            for model, result in submission.models.items()}
    todo = set()
    for model, key in keys.items():
        if key in _CACHE:
            results.update(_CACHE[key])
        else:
            todo.add(model)
    if todo:
        plugin = _Plugin(submission, todo)
        with contextlib.redirect_stdout(io.StringIO()) as log:
            code = pytest.main([str(CHECKS), "-q", "-p", "no:cacheprovider", "-p", "no:nbval",
                                "--rootdir", str(CHECKS.parent.parent), "-W", "ignore"],
                               plugins=[plugin])
        if plugin.internal or code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            raise GraderError("the hidden checks crashed (not the student's fault): "
                              + ("; ".join(plugin.internal) or log.getvalue()[-2000:]))
        for model in todo:
            mine = {g: r for g, r in plugin.results.items() if g.startswith(f"{model}_")}
            _CACHE[keys[model]] = mine
            results.update(mine)
    return results
