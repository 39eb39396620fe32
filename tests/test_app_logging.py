"""The Formgrader's reports are INFO (cnn_grader/app_logging.py, issue 14): its buttons run
nbgrader's applications in the server, where their loggers were at DEBUG."""
from __future__ import annotations

from pathlib import Path

import pytest

from cnn_grader.app_logging import APP_LOGGERS, asks_for_debug, logging_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv", [
    ["nbgrader", "autograde", "a", "--debug"],
    ["nbgrader", "autograde", "--log-level=DEBUG"],
    ["nbgrader", "autograde", "--log-level", "debug"],
    ["nbgrader", "autograde", "--log_level=10"],
    ["jupyter-lab", "--Application.log_level=DEBUG"],
])
def test_the_command_line_can_still_ask_for_debug(argv):
    # kills: DEBUG never reachable again (an instructor's --debug ignored)
    assert asks_for_debug(argv)
    assert {entry["level"] for entry in logging_config(argv)["loggers"].values()} == {"DEBUG"}


@pytest.mark.parametrize("argv", [
    ["jupyter-lab", "--ServerApp.root_dir=/work"],
    ["nbgrader", "autograde", "assignment_cnn", "--log-level=INFO"],
    ["nbgrader", "autograde", "--log-level"],  # no value: not a request for DEBUG
    ["nbgrader", "autograde", "debug"],
])
def test_otherwise_every_application_logs_info(argv):
    # kills: DEBUG by default, a level that leaves out the autograde or feedback loggers
    assert not asks_for_debug(argv)
    loggers = logging_config(argv)["loggers"]
    assert {"AutogradeApp", "GenerateAssignmentApp", "GenerateFeedbackApp"} <= set(loggers)
    assert {entry["level"] for entry in loggers.values()} == {"INFO"}
    assert set(loggers) == set(APP_LOGGERS)


def test_a_formgrader_report_holds_info_lines_only():
    # The Formgrader's path (nbgrader.utils.capture_log, an AutogradeApp under the API)
    # with the course's configuration. kills: the setting left out of nbgrader_config.py
    # or set on a class the applications do not inherit from
    from nbgrader.apps import AutogradeApp
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.utils import capture_log
    from traitlets.config import Config, PyFileConfigLoader

    config = Config()
    loader = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT / "grader"))
    loader.load_config()
    config.merge(loader.config)
    api = NbGraderAPI(config=config)
    api.log_level = 10  # what the Formgrader passes on from the server's logger
    app = AutogradeApp(coursedir=api.coursedir, parent=api)
    app.start = lambda: (app.log.debug("Kernel is taking too long to finish, terminating"),
                         app.log.info("graded with profile ci"))
    assert capture_log(app) == {"success": True, "log": "[INFO] graded with profile ci\n"}
