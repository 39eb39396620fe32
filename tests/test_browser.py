"""The course in a real browser (headless Chromium, see tests/browser.py), as students and
instructors use it: lecture 4 runs in JupyterLab with widget progress bars, nbgrader's
Validate button judges the student assignment and, in the students' lab, an exercise, and
the Formgrader manages the course.

One `make lab` (ci profile) serves a scratch folder laid out like the repository: copies of
the notebooks, a scratch nbgrader course in grader/ and a copy of the repository's
nbgrader_config.py, so nothing in the repository changes. Screenshots: build/browser-tests/.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from browser import (code_cells, cell_problems, lab_root, menu, missing_browser, open_lab,
                     open_notebook, progress_bars, run_all_cells, screenshot, start_lab,
                     stop_lab)
from waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from generate_assignment import ASSIGNMENT, NOTEBOOK, make_course  # noqa: E402

pytestmark = pytest.mark.integration  # make test-integration

LECTURE = "lectures/04_naive_convnet.ipynb"
EXERCISE = "exercise_01_conv2d.ipynb"
MASTER = nbformat.read(ROOT / "solutions" / NOTEBOOK, as_version=4)
STUDENT = nbformat.read(ROOT / "assignments" / NOTEBOOK, as_version=4)
RUN_SECONDS = 400  # the longest a notebook run, a validation or an autograde may take here
# The Formgrader's submission: AlexNet with 2x2 pools (same shapes as the paper's 3x3/2 pools,
# another network), VGG16 not started. Points: AlexNet's parameters, logits, trainability.
SUBMISSION_PARTS = ("alexnet_parameters", "alexnet_logits", "alexnet_trainable")


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def completed(student: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student copy with every answer cell holding the master's solution."""
    solutions = {grade_id(c): c.source for c in MASTER.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    notebook = copy.deepcopy(student)
    for cell in notebook.cells:
        if grade_id(cell) in solutions:
            cell.source = "\n".join(line for line in solutions[grade_id(cell)].splitlines()
                                    if not re.match(r"\s*### (BEGIN|END) SOLUTION", line))
    return notebook


def submission() -> nbformat.NotebookNode:
    notebook = completed(STUDENT)
    for cell, untouched in zip(notebook.cells, STUDENT.cells):
        if grade_id(cell) == "vgg16_model":
            cell.source = untouched.source
        if grade_id(cell) == "alexnet_model":
            assert "nn.MaxPool2d(kernel_size=3, stride=2)" in cell.source
            cell.source = cell.source.replace("nn.MaxPool2d(kernel_size=3, stride=2)",
                                              "nn.MaxPool2d(kernel_size=2, stride=2)")
    return notebook


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`make lab` in a scratch copy of the repository's layout, ci profile."""
    reason = missing_browser()
    if reason:
        from conftest import require  # skips, or fails in CI (CI=true)
        require(reason)
    root = lab_root(tmp_path_factory.mktemp("lab"))
    (root / "lectures").mkdir()
    shutil.copy(ROOT / LECTURE, root / LECTURE)
    for name, notebook in (("untouched", STUDENT), ("completed", completed(STUDENT))):
        (root / "student" / name).mkdir(parents=True)
        nbformat.write(notebook, root / "student" / name / NOTEBOOK)
    course = make_course(root / "grader")
    shutil.copytree(ROOT / "grader" / "exchange", course / "exchange")
    # A copy, not a link: it finds the course next to itself.
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    server = start_lab(root, root / ".lab-state", ("PROFILE=ci",), {
        "CNN_COURSE_PROFILE": "ci", "NBGRADER_DB_URL": f"sqlite:///{course / 'gradebook.db'}"})
    yield server
    stop_lab(server)


def completed_exercise(name: str) -> nbformat.NotebookNode:
    """The student copy of exercise ``name`` with the master's solutions in its blanks."""
    master = nbformat.read(ROOT / "solutions" / name, as_version=4)
    notebook = nbformat.read(ROOT / "exercises" / name, as_version=4)
    solved = [c for c in master.cells if "master-only" not in c.metadata.get("tags", [])]
    for cell, original in zip(notebook.cells, solved, strict=True):
        if "raise NotImplementedError()" in cell.source and "nbgrader" not in cell.metadata:
            cell.source = "\n".join(line for line in original.source.splitlines()
                                    if not re.match(r"\s*### (BEGIN|END) SOLUTION", line))
    return notebook


@pytest.fixture(scope="module")
def student_lab(tmp_path_factory):
    """`make lab ROLE=student` (ci profile, the students' nbgrader settings from lab/student/)
    serving exercise 1 twice: as handed out, and completed with the master's solution."""
    reason = missing_browser()
    if reason:
        from conftest import require  # skips, or fails in CI (CI=true)
        require(reason)
    root = lab_root(tmp_path_factory.mktemp("student-lab"))
    for name, notebook in (("untouched", nbformat.read(ROOT / "exercises" / EXERCISE, 4)),
                           ("completed", completed_exercise(EXERCISE))):
        (root / name).mkdir()
        nbformat.write(notebook, root / name / EXERCISE)
    server = start_lab(root, root / ".lab-state", ("PROFILE=ci", "ROLE=student"),
                       {"CNN_COURSE_PROFILE": "ci"})
    yield server
    stop_lab(server)


@pytest.fixture
def student_page(student_lab, chromium):
    yield chromium
    for session in json.loads(student_lab.api("api/sessions")[1]):
        student_lab.api(f"api/sessions/{session['id']}", method="DELETE")


@pytest.fixture
def page(lab, chromium):
    """The browser, for one test; the kernels it started are shut down afterwards."""
    yield chromium
    for session in json.loads(lab.api("api/sessions")[1]):
        lab.api(f"api/sessions/{session['id']}", method="DELETE")


def test_lecture_4_runs_all_cells_with_widget_progress_bars(lab, page):
    open_notebook(page, lab, LECTURE, "lecture4")
    seconds = run_all_cells(page, RUN_SECONDS)
    cells = code_cells(page)
    assert not cell_problems(cells), "\n".join(cell_problems(cells))
    assert "profile: ci" in cells[0]["outputs"][0]["text"]
    widgets, text_bars = progress_bars(cells)
    assert widgets and all("epoch" in text for text in widgets), widgets
    assert not text_bars, f"progress bars shown as text: {text_bars}"
    page.execute_script("document.querySelector('.widget-hprogress').scrollIntoView()")
    screenshot(page, "lecture4_progress_bars")
    print(f"lecture 4: Run All Cells took {seconds:.0f} s")


def test_the_checks_see_errors_and_text_progress_bars(lab, page):
    """What a broken notebook looks like to the checks above: an error stops Run All, the
    cells after it stay unrun, and tqdm without widgets prints text bars."""
    cells = ["from tqdm import tqdm\nfor _ in tqdm(range(3)):\n    pass",
             "print('Error displaying widget: model not found')", "1 / 0", "print('after')"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells],
                                        metadata={"kernelspec": STUDENT.metadata.kernelspec})
    nbformat.write(notebook, lab.root / "broken.ipynb")
    open_notebook(page, lab, "broken.ipynb", "broken")
    run_all_cells(page, RUN_SECONDS)
    cells = code_cells(page)
    problems = cell_problems(cells)
    assert problems == [
        "code cell 2 `print('Error displaying widget: model not found')` shows "
        "'Error displaying widget'",
        "code cell 3 `1 / 0` shows an error: ZeroDivisionError",
        "code cell 4 `print('after')` did not run (prompt '[ ]:')",
    ], problems
    widgets, text_bars = progress_bars(cells)
    assert not widgets and len(text_bars) == 1 and "3/3" in text_bars[0]


def validate(page, lab, path: str, workspace: str) -> tuple[str, str, float]:
    """Open ``path``, press Validate in the notebook's toolbar and wait for the result:
    (the dialog body's class, its text, seconds)."""
    from selenium.webdriver.common.by import By

    open_notebook(page, lab, path, workspace)
    button = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, ".jp-Toolbar .validate-button"),
                      30, "the Validate button")
    assert button[0].text == "Validate"
    start = time.monotonic()
    button[0].click()
    body = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-body"),
                    RUN_SECONDS, "the validation result")[0]
    seconds = time.monotonic() - start
    header = page.find_element(By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-header").text
    assert header == "Validation Results", header
    return body.get_attribute("class"), body.text, seconds


def test_validate_reports_the_untouched_assignment_failing(lab, page):
    kind, text, seconds = validate(page, lab, f"student/untouched/{NOTEBOOK}", "untouched")
    screenshot(page, "validate_untouched")
    assert "validation-failed" in kind.split()
    assert "The following cell failed" in text and "NotImplementedError" in text
    assert '"""AlexNet: parameter counts' in text
    print(f"Validate (untouched): {seconds:.0f} s")


def test_validate_reports_the_completed_assignment_passing(lab, page):
    kind, text, seconds = validate(page, lab, f"student/completed/{NOTEBOOK}", "completed")
    screenshot(page, "validate_completed")
    assert "validation-success" in kind.split()
    assert text == "Success! Your notebook passes all the tests."
    print(f"Validate (completed): {seconds:.0f} s")


def test_validate_fails_an_untouched_exercise_and_names_the_check(student_lab, student_page):
    kind, text, seconds = validate(student_page, student_lab, f"untouched/{EXERCISE}",
                                   "exercise-untouched")
    screenshot(student_page, "validate_exercise_untouched")
    assert "validation-failed" in kind.split(), text
    assert "The following cell failed" in text
    assert "passed = selfcheck.check_conv2d(conv2d)" in text
    assert "self-check check_conv2d failed" in text and "not implemented yet" in text
    assert "Success" not in text
    print(f"Validate (exercise 1, untouched): {seconds:.0f} s")


def test_validate_passes_a_completed_exercise(student_lab, student_page):
    kind, text, seconds = validate(student_page, student_lab, f"completed/{EXERCISE}",
                                   "exercise-completed")
    screenshot(student_page, "validate_exercise_completed")
    assert "validation-success" in kind.split(), text
    assert text == "Success! Your notebook passes all the tests."
    print(f"Validate (exercise 1, completed): {seconds:.0f} s")


def press(page, link, success: str) -> tuple[float, str]:
    """Click a Formgrader button, wait for its report, check that it says ``success`` and
    close it; return the seconds it took and the report's text."""
    from selenium.webdriver.common.by import By

    def reports():
        return [m for m in page.find_elements(By.CSS_SELECTOR, ".modal") if m.is_displayed()]

    start = time.monotonic()
    link.click()
    report = wait_for(reports, RUN_SECONDS, f"the report after pressing {success!r}")[0]
    seconds = time.monotonic() - start
    text = report.get_attribute("textContent")  # all of it, the log's scrolled part too
    assert success in text, text

    def closed() -> bool:
        """Press the report's close button again while it shows: on a busy machine a
        click during the pop-up's fade-in animation can be lost."""
        from selenium.common.exceptions import WebDriverException

        shown = reports()
        for modal in shown:
            try:
                modal.find_element(By.CSS_SELECTOR, ".modal-footer button").click()
            except WebDriverException:  # it closed meanwhile, or is still fading in
                pass
        return not shown
    wait_for(closed, 30, "the report to close", poll=2.0)
    return seconds, text


def test_formgrader_manages_the_course_and_autogrades(lab, page):
    """Nbgrader > Formgrader as a new instructor uses it: the course in grader/ is listed,
    Generate creates the student version, Release puts it into the course's exchange, a
    submission shows, Autograde scores it."""
    from selenium.webdriver.common.by import By

    course = lab.root / "grader"
    folder = course / "submitted" / "ada" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(submission(), folder / NOTEBOOK)
    points = {grade_id(c): float(c.metadata["nbgrader"]["points"]) for c in MASTER.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    expected = f"{sum(points[p] for p in SUBMISSION_PARTS):g} / {sum(points.values()):g}"

    open_lab(page, lab, "formgrader")
    menu(page, "Nbgrader", "Formgrader")
    frame = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, "#formgrader iframe"), 30,
                     "the Formgrader panel")[0]
    page.switch_to.frame(frame)
    name = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, "#main-table td.name"), 60,
                    "the assignment list")[0]
    assert name.text == ASSIGNMENT
    assert not page.find_elements(By.CSS_SELECTOR, "#warning-exchange, #warning-course-id")
    generating, _ = press(page, page.find_element(By.CSS_SELECTOR, "#main-table td.assign a"),
                       f"Successfully created the student version of '{ASSIGNMENT}'")
    assert (course / "release" / ASSIGNMENT / NOTEBOOK).exists()
    press(page, wait_for(lambda: page.find_elements(By.CSS_SELECTOR, "#main-table td.release a"),
                         30, "the Release button")[0], f"Successfully released '{ASSIGNMENT}'")
    assert (course / "exchange" / "cnn-course" / "outbound" / ASSIGNMENT / NOTEBOOK).exists()
    page.switch_to.default_content()
    screenshot(page, "formgrader_assignments")
    page.switch_to.frame(frame)
    wait_for(lambda: page.find_elements(By.LINK_TEXT, "1"), 30, "one submission")[0].click()

    def student_row():
        return [r for r in page.find_elements(By.CSS_SELECTOR, "#main-table tr") if "ada" in r.text]

    row = wait_for(student_row, 60, "ada's submission")[0]
    assert "needs autograding" in row.text
    assert row.find_element(By.CSS_SELECTOR, "td.score").text == ""
    grading, report = press(page, row.find_element(By.CSS_SELECTOR, "td.autograde a"),
                            f"Successfully autograded '{ASSIGNMENT}' for student 'ada'")
    # The instructor's report: INFO lines, among them the phases and the points; no DEBUG.
    assert "[DEBUG]" not in report and len(report) < 8000, report
    assert re.search(r"graded with profile ci: kernel [\d.]+ s and description", report), report
    row = wait_for(lambda: [r for r in student_row() if "needs autograding" not in r.text],
                   30, "the graded submission")[0]
    assert row.find_element(By.CSS_SELECTOR, "td.status").text == "graded"
    assert row.find_element(By.CSS_SELECTOR, "td.score").text == expected
    page.switch_to.default_content()
    screenshot(page, "formgrader_graded")
    print(f"Formgrader: Generate {generating:.0f} s, Autograde {grading:.0f} s")
