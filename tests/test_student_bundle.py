"""The student bundle holds the course materials and nothing instructor-only."""
from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cnn_course.runtime import PROFILES

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from build_student_bundle import build, leaks  # noqa: E402


def solution_layer_lines() -> set[str]:
    """Lines of the assignment master's solutions that build layers."""
    master = nbformat.read(ROOT / "solutions" / "assignment_cnn.ipynb", as_version=4)
    lines = set()
    for cell in master.cells:
        for region in re.findall(r"### BEGIN SOLUTION(.*?)### END SOLUTION", cell.source, re.S):
            lines |= {line.strip() for line in region.splitlines()
                      if re.search(r"Conv2d|Linear|MaxPool2d", line)}
    return lines


def test_bundle_has_the_materials_and_no_instructor_files(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_student_bundle.py"),
                             str(tmp_path / "student")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = tmp_path / "student"
    for needed in ("README.md", "requirements.txt", "Makefile", "pyproject.toml",
                   "assignments/assignment_cnn.ipynb", "cnn_course/__init__.py",
                   "lectures/01_convolution.ipynb", "exercises/exercise_01_conv2d.ipynb"):
        assert (bundle / needed).is_file(), needed
    names = {p.relative_to(bundle).parts[0] for p in bundle.rglob("*")}
    assert not names & {"grader", "solutions", "tests", "scripts", ".ci", "data", ".venv"}
    assert leaks(bundle) == []


def test_no_line_of_the_reference_models_reaches_students(tmp_path):
    secret = solution_layer_lines()
    assert len(secret) >= 10  # AlexNet and VGG16 layers
    bundle = build(tmp_path / "student")
    for path in bundle.rglob("*"):
        if path.suffix in (".py", ".ipynb", ".md"):
            text = path.read_text(encoding="utf-8")
            shown = {line for line in secret if line in text}
            assert not shown, f"{path.relative_to(bundle)} shows solution lines {shown}"


def test_leak_guard_catches_planted_material(tmp_path):
    bundle = build(tmp_path / "student")
    (bundle / "exercises" / "extra.py").write_text("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n")
    (bundle / "grader").mkdir()
    (bundle / "grader" / "nbgrader_config.py").write_text("")
    (bundle / "assignments" / "note.md").write_text("import hidden_checks")
    found = "\n".join(leaks(bundle))
    assert "exercises/extra.py: contains 'BEGIN SOLUTION'" in found
    assert "grader/nbgrader_config.py: instructor-only file" in found
    assert "assignments/note.md: contains 'hidden_checks'" in found


def test_bundle_makefile_sets_up_the_lab_and_nothing_instructor_only(tmp_path):
    bundle = build(tmp_path / "student")
    lab = subprocess.run(["make", "-n", "lab"], cwd=bundle, capture_output=True, text=True)
    assert lab.returncode == 0, lab.stderr
    assert "pip install --quiet -r requirements.txt" in lab.stdout
    assert "jupyter lab" in lab.stdout
    for target in ("test", "bundle", "benchmark"):
        refused = subprocess.run(["make", "-n", target], cwd=bundle, capture_output=True,
                                 text=True)
        assert refused.returncode != 0 and "No rule to make target" in refused.stderr, target


# --- the students' JupyterLab: nbgrader's Validate only, no news pop-up, the PROFILE choice

LAB = ROOT / "lab"
VALIDATE_PLUGIN = "@jupyter/nbgrader:validate-assignment"
VALIDATE_SERVER = "nbgrader.server_extensions.validate_assignment"


def nbgrader_lab_plugins() -> set[str]:
    """Plugin ids declared by the nbgrader lab extension JupyterLab loads (its bundled code)."""
    static = Path(sys.prefix, "share", "jupyter", "labextensions", "@jupyter", "nbgrader",
                  "static")
    return {plugin for js in static.glob("*.js")
            for plugin in re.findall(r'"(@jupyter/nbgrader:[\w-]+)"', js.read_text())}


def nbgrader_server_extensions() -> set[str]:
    """nbgrader's server extensions: the package (all four) and each handler module."""
    [package] = importlib.util.find_spec("nbgrader").submodule_search_locations
    return {"nbgrader"} | {f"nbgrader.server_extensions.{module.name}" for module
                           in pkgutil.iter_modules([str(Path(package, "server_extensions"))])}


def student_config() -> tuple[set[str], set[str]]:
    """(lab plugins, server extensions) that lab/student/ switches off."""
    page = json.loads((LAB / "student" / "labconfig" / "page_config.json").read_text())
    server = json.loads((LAB / "student" / "jupyter_server_config.json").read_text())
    return ({plugin for plugin, off in page["disabledExtensions"].items() if off},
            {name for name, on in server["ServerApp"]["jpserver_extensions"].items() if not on})


def disabling_problems(disabled: set[str], declared: set[str], keep: str) -> list[str]:
    """What is wrong with switching off ``disabled`` of ``declared``, all but ``keep``."""
    problems = [f"{name} is not declared by the installed nbgrader"
                for name in sorted(disabled - declared)]
    problems += [f"{name} stays enabled" for name in sorted(declared - disabled - {keep})]
    return problems + ([f"{keep} is switched off"] if keep in disabled else [])


def test_students_keep_validate_and_lose_every_other_part_of_nbgrader():
    plugins, servers = nbgrader_lab_plugins(), nbgrader_server_extensions()
    assert {VALIDATE_PLUGIN, "@jupyter/nbgrader:assignment-list",
            "@jupyter/nbgrader:course-list"} <= plugins
    assert VALIDATE_SERVER in servers and len(servers) == 5
    disabled_plugins, disabled_servers = student_config()
    assert disabling_problems(disabled_plugins, plugins, VALIDATE_PLUGIN) == []
    assert disabling_problems(disabled_servers, servers, VALIDATE_SERVER) == []


def test_a_renamed_plugin_or_a_disabled_validate_is_detected():
    plugins = nbgrader_lab_plugins()
    disabled, _ = student_config()
    renamed = disabled - {"@jupyter/nbgrader:course-list"} | {"@jupyter/nbgrader:courses"}
    assert disabling_problems(renamed, plugins, VALIDATE_PLUGIN) == [
        "@jupyter/nbgrader:courses is not declared by the installed nbgrader",
        "@jupyter/nbgrader:course-list stays enabled",
    ]
    assert disabling_problems(disabled | {VALIDATE_PLUGIN}, plugins, VALIDATE_PLUGIN) == [
        f"{VALIDATE_PLUGIN} is switched off"]


def test_jupyter_applies_the_student_config_on_its_config_path(monkeypatch):
    from jupyter_server.serverapp import ServerApp
    from jupyterlab_server.config import get_page_config

    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(LAB / "student"))
    disabled_plugins, disabled_servers = student_config()
    assert set(get_page_config([])["disabledExtensions"]) == disabled_plugins
    app = ServerApp()
    app.load_config_file()
    app.find_server_extensions()
    enabled = {name for name, on in app.jpserver_extensions.items() if on}
    assert VALIDATE_SERVER in enabled and not enabled & disabled_servers


def override_problems(overrides: dict) -> list[str]:
    """Settings in ``overrides`` that the installed JupyterLab's schemas reject."""
    import jsonschema

    schemas = Path(sys.prefix, "share", "jupyter", "lab", "schemas")
    problems = []
    for plugin, settings in overrides.items():
        package, _, name = plugin.partition(":")
        path = schemas / package / f"{name}.json"
        if not path.is_file():
            problems.append(f"{plugin}: no such settings schema")
            continue
        try:
            jsonschema.validate(settings, json.loads(path.read_text()))
        except jsonschema.ValidationError as error:
            problems.append(f"{plugin}: {error.message}")
    return problems


def test_lab_settings_switch_off_the_news_as_jupyterlab_defines_them():
    overrides = json.loads((LAB / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    assert override_problems(overrides) == []


@pytest.mark.parametrize("overrides, problem", [
    ({"@jupyterlab/apputils-extension:notification": {"fetchNews": False}}, "not of type"),
    ({"@jupyterlab/apputils-extension:notification": {"fetchNews": "never"}}, "'never' is not"),
    ({"@jupyterlab/apputils-extension:notification": {"fetchnews": "false"}}, "fetchnews"),
    ({"@jupyterlab/apputils-extension:notifications": {"fetchNews": "false"}}, "no such"),
])
def test_a_misspelt_lab_setting_is_detected(overrides, problem):
    found = override_problems(overrides)
    assert len(found) == 1 and problem in found[0], found


def fake_venv(bundle: Path, log: Path) -> None:
    """A .venv whose python and jupyter only log how the Makefile calls them."""
    bin_dir = bundle / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "jupyter"):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $* | profile=$CNN_COURSE_PROFILE '
                        f'| config=$JUPYTER_CONFIG_PATH" >> {log}\n')
        tool.chmod(0o755)
    stamp = bundle / ".venv" / ".installed"
    stamp.touch()
    later = (bundle / "requirements.txt").stat().st_mtime + 10
    os.utime(stamp, (later, later))


def run_make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CNN_COURSE_PROFILE", "JUPYTER_CONFIG_PATH", "MAKEFLAGS")}
    return subprocess.run(["make", *args], cwd=folder, capture_output=True, text=True, env=env)


def test_bundle_lab_runs_with_student_config_news_off_and_the_chosen_profile(tmp_path):
    bundle = build(tmp_path / "student")
    log = tmp_path / "calls.txt"
    fake_venv(bundle, log)
    assert run_make(bundle, "lab").returncode == 0
    data, lab = log.read_text().splitlines()
    assert data == "python -m cnn_course --best-effort | profile= | config="
    assert lab.startswith(f"jupyter lab --ServerApp.root_dir={bundle} ")
    assert lab.endswith(f"| profile= | config={bundle}/lab/student")
    installed = bundle / ".venv" / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert installed.read_text() == (LAB / "overrides.json").read_text()

    log.unlink()
    assert run_make(bundle, "lab", "PROFILE=ci").returncode == 0
    [lab] = log.read_text().splitlines()  # ci reads the shipped subset: no data step
    assert lab.startswith("jupyter lab ")
    assert lab.endswith(f"| profile=ci | config={bundle}/lab/student")

    log.unlink()
    assert run_make(bundle, "lab", "PROFILE=cpu", "ROLE=instructor").returncode == 0
    assert log.read_text().splitlines()[-1].endswith("| profile=cpu | config=")


def test_make_refuses_an_unknown_profile_or_role(tmp_path):
    bundle = build(tmp_path / "student")
    refused = run_make(bundle, "-n", "lab", "PROFILE=gpu")
    assert refused.returncode != 0
    assert f"PROFILE must be one of {' '.join(PROFILES)}, not 'gpu'" in refused.stderr
    refused = run_make(bundle, "-n", "lab", "ROLE=teacher")
    assert refused.returncode != 0 and "ROLE must be student or instructor" in refused.stderr


def test_the_repository_lab_keeps_the_instructors_nbgrader():
    dry = run_make(ROOT, "-n", "lab")
    assert dry.returncode == 0, dry.stderr
    assert "jupyter lab" in dry.stdout and "JUPYTER_CONFIG_PATH" not in dry.stdout
    assert "lab/overrides.json" in dry.stdout or (
        ROOT / ".venv" / "share" / "jupyter" / "lab" / "settings" / "overrides.json").is_file()


# --- the bundle's READMEs

def test_bundle_readmes_are_the_students_and_list_every_notebook(tmp_path):
    bundle = build(tmp_path / "student")
    for folder in ("lectures", "exercises", "assignments"):
        readme = (bundle / folder / "README.md").read_text()
        assert readme != (ROOT / folder / "README.md").read_text()
        for notebook in (bundle / folder).glob("*.ipynb"):
            title = nbformat.read(notebook, as_version=4).cells[0].source.splitlines()[0]
            assert f"- `{notebook.name}`: {title.lstrip('# ')}" in readme


def test_leak_guard_refuses_readmes_that_point_at_instructor_material(tmp_path):
    bundle = build(tmp_path / "student")
    (bundle / "exercises" / "README.md").write_text(
        "Generated from `solutions/`: never edit, Regenerate them, then run `make test`.\n")
    (bundle / "README.md").write_text("See scripts/ and grader/ for the rest.\n")
    found = [line for line in leaks(bundle) if "README.md:" in line]
    assert sorted(found) == sorted(
        [f"exercises/README.md: points at {hit!r}, which students do not have"
         for hit in ("Regenerat", "make test", "solutions/")]
        + [f"README.md: points at {hit!r}, which students do not have"
           for hit in ("grader/", "scripts/")])
    (bundle / "lectures" / "notes.md").write_text("make test")  # only READMEs are checked
    assert [line for line in leaks(bundle) if ".md:" in line] == found


# --- the bundle's notebooks: no test-tool markers, nothing the bundle lacks

def test_bundle_lectures_lose_their_test_markers_and_keep_their_code(tmp_path):
    bundle = build(tmp_path / "student")
    for lecture in sorted((ROOT / "lectures").glob("*.ipynb")):
        original = nbformat.read(lecture, as_version=4)
        copy = nbformat.read(bundle / "lectures" / lecture.name, as_version=4)
        assert len(copy.cells) == len(original.cells)
        for mine, theirs in zip(copy.cells, original.cells):
            kept = [line for line in theirs.source.splitlines()
                    if not (theirs.cell_type == "code" and line.startswith("# NBVAL_"))]
            assert mine.source.splitlines() == kept
            assert mine.get("outputs") == theirs.get("outputs")
    for notebook in bundle.rglob("*.ipynb"):
        code = "\n".join(c.source for c in nbformat.read(notebook, 4).cells
                         if c.cell_type == "code")
        assert "NBVAL" not in code.upper(), notebook.name


def test_bundle_notebooks_carry_no_markers_and_mention_nothing_the_bundle_lacks(tmp_path):
    """The leak guard on the notebooks as shipped. A failure here names the notebook and
    the word (e.g. a lecture citing docs/ or scripts/)."""
    bundle = build(tmp_path / "student")
    found = [line for line in leaks(bundle) if ".ipynb:" in line]
    assert found == []


def test_leak_guard_refuses_notebooks_with_markers_or_instructor_references(tmp_path):
    bundle = build(tmp_path / "student")
    cells = [nbformat.v4.new_code_cell("# NBVAL_SKIP\nx = 1"),
             nbformat.v4.new_markdown_cell("Measured with scripts/benchmark.py, logged in "
                                           "docs/runs/x.txt; `make test` checks it."),
             nbformat.v4.new_code_cell("y = 2", metadata={"tags": ["nbval-ignore-output"]})]
    cells[2].outputs = [nbformat.v4.new_output("stream", text="see solutions/ex.ipynb\n")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), bundle / "lectures" / "99_x.ipynb")
    (bundle / "lab" / "nbgrader_config.py").write_text("")
    found = set(leaks(bundle))
    assert found == {
        "lectures/99_x.ipynb: carries the test-tool marker 'NBVAL'",
        "lectures/99_x.ipynb: carries the test-tool marker 'nbval'",
        "lectures/99_x.ipynb: mentions 'scripts/', which students do not have",
        "lectures/99_x.ipynb: mentions 'docs/', which students do not have",
        "lectures/99_x.ipynb: mentions 'make test', which students do not have",
        "lectures/99_x.ipynb: mentions 'solutions/', which students do not have",
        "lab/nbgrader_config.py: instructor-only file",
    } | {line for line in leaks(build(tmp_path / "clean"))}


# --- nbgrader's Validate with the students' settings (lab/student/nbgrader_config.json)

def _validate_with_student_settings(cells: list[str], folder: Path) -> dict:
    from nbgrader.validator import Validator
    from traitlets.config import Config

    settings = json.loads((LAB / "student" / "nbgrader_config.json").read_text())
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, folder / "lecture.ipynb")
    return Validator(config=Config(settings)).validate(str(folder / "lecture.ipynb"))


def test_student_validate_runs_a_lecture_and_reports_a_failing_cell(tmp_path):
    """A lecture has no nbgrader test cells: with the students' settings Validate still
    runs every cell and fails on the one that raises, instead of a vacuous success."""
    result = _validate_with_student_settings(["x = 1", "assert x == 2, 'x is not 2'"], tmp_path)
    [failed] = result["failed"]
    assert failed["source"] == "assert x == 2, 'x is not 2'"
    assert "AssertionError" in failed["raw_error"] and "x is not 2" in failed["raw_error"]
    assert _validate_with_student_settings(["x = 1", "assert x == 1"], tmp_path) == {}


def test_student_validate_gives_long_cells_time():
    settings = json.loads((LAB / "student" / "nbgrader_config.json").read_text())
    assert settings["Validator"]["validate_all"] is True
    assert settings["Execute"]["timeout"] >= 1200  # exercise 4 trains for about 5 minutes


def test_validate_reads_the_student_settings_from_the_config_path(monkeypatch, tmp_path):
    """What nbgrader's Validate handler does (load_config): an NbGrader app's config files
    on Jupyter's config path, where `make lab ROLE=student` puts lab/student/."""
    from nbgrader.apps import NbGrader

    monkeypatch.chdir(tmp_path)  # no course nbgrader_config.py in the working folder
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(LAB / "student"))
    app = NbGrader()
    app.load_config_file()
    assert app.config.Validator.validate_all is True
    assert app.config.Execute.timeout >= 1200
