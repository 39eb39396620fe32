"""The Formgrader's reports are INFO (cnn_grader/app_logging.py, issue 14): its buttons run
nbgrader's converters in the Jupyter server, whose logger traitlets keeps at DEBUG."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cnn_grader.app_logging import InfoAndAbove, asks_for_debug, quiet_server_log

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv, debug", [
    (["jupyter-lab", "--debug"], True),
    (["jupyter-lab", "--log-level=DEBUG"], True),
    (["jupyter-lab", "--log-level", "debug"], True),
    (["jupyter-lab", "--log_level=10"], True),
    (["jupyter-lab", "--ServerApp.log_level=DEBUG"], True),
    (["jupyter-lab", "--ServerApp.root_dir=/work"], False),
    (["jupyter-lab", "--log-level=INFO"], False),
    (["jupyter-lab", "--log-level"], False),  # no value: not a request for DEBUG
    (["jupyter-lab", "debug"], False),
])
def test_what_asks_for_debug(argv, debug):
    # kills: an instructor's --debug ignored, DEBUG kept for any mention of a level
    assert asks_for_debug(argv) is debug


def test_the_filter_keeps_info_and_above():
    # kills: a filter that drops INFO or WARNING, or keeps DEBUG
    kept = {level: InfoAndAbove().filter(logging.LogRecord("x", level, __file__, 1, "m", None,
                                                             None))
            for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)}
    assert kept == {logging.DEBUG: False, logging.INFO: True, logging.WARNING: True,
                    logging.ERROR: True}


@pytest.fixture
def server(monkeypatch):
    """A Jupyter server's application, as the Formgrader runs in, with loggers whose
    filters the test may change."""
    from jupyter_server.serverapp import ServerApp
    from traitlets.log import get_logger

    app = ServerApp.instance()
    level = app.log.level
    app.log.setLevel(logging.DEBUG)  # as in a started server (traitlets >= 5.2)
    monkeypatch.setattr(app.log, "filters", [])
    monkeypatch.setattr(get_logger(), "filters", [])
    yield app
    app.log.setLevel(level)
    ServerApp.clear_instance()


def formgrader_report(server) -> dict:
    """An autograde button's report: the course configuration loaded in the server, an
    NbGraderAPI whose log level nbgrader takes from the server's logger (DEBUG), the
    Autograde converter logging a DEBUG and an INFO line, caught by capture_log."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.converters import Autograde
    from nbgrader.utils import capture_log
    from traitlets.config import Config, PyFileConfigLoader

    config = Config()
    loader = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT / "grader"))
    loader.load_config()
    config.merge(loader.config)
    level = server.log.level  # nbgrader's formgrader: read before the API resets it
    api = NbGraderAPI(config=config, parent=server)
    api.log_level = level
    assert api.log.getEffectiveLevel() == logging.DEBUG  # the premise: DEBUG reaches handlers
    converter = Autograde(coursedir=api.coursedir, parent=api)
    converter.start = lambda: (converter.log.debug("Applying preprocessor: Preflight"),
                               converter.log.info("graded with profile ci"))
    return capture_log(converter)


def test_a_formgrader_report_holds_info_lines_only(server, monkeypatch):
    # kills: the call left out of nbgrader_config.py, a filter on a logger the converters
    # do not use
    monkeypatch.setattr("sys.argv", ["jupyter-lab"])
    assert formgrader_report(server) == {"success": True, "log": "[INFO] graded with profile ci\n"}
    formgrader_report(server)  # loaded again before the next button: still one filter
    assert [type(f) for f in server.log.filters] == [InfoAndAbove]


def test_a_server_started_with_debug_reports_debug(server, monkeypatch):
    monkeypatch.setattr("sys.argv", ["jupyter-lab", "--debug"])
    assert "[DEBUG] Applying preprocessor" in formgrader_report(server)["log"]


def test_nothing_changes_outside_a_server(monkeypatch):
    # kills: nbgrader's command line losing DEBUG lines its log file or --debug would show
    from jupyter_server.serverapp import ServerApp
    from traitlets.log import get_logger

    ServerApp.clear_instance()
    monkeypatch.setattr(get_logger(), "filters", [])
    quiet_server_log(["nbgrader", "autograde", "assignment_cnn"])
    assert get_logger().filters == []
