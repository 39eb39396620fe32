"""The Formgrader's reports at INFO, as the command line's log: no DEBUG lines.

The Formgrader's buttons run nbgrader's converters inside the Jupyter server. They log
through traitlets' process logger (``traitlets.log.get_logger()``: the server's), which
nbgrader sets to the level of the server's logger before each button: DEBUG, because
since traitlets 5.2 an application's logger sits at DEBUG and only its console handler
filters. ``nbgrader.utils.capture_log`` catches the report with a handler that has no
level, so one autograde's report held every DEBUG line (31 kB). ``quiet_server_log``
gives those loggers a filter that keeps INFO and above, unless the server was started
asking for DEBUG; the server's console shows what it showed before.
"""
from __future__ import annotations

import logging
import re
import sys

_LEVEL_OPTION = re.compile(r"--(?:[A-Za-z]+\.)?log[-_]level(?:=(.*))?$")


def asks_for_debug(argv: list[str]) -> bool:
    """Whether ``argv`` asks for DEBUG: ``--debug``, or ``--log-level`` (also
    ``--ServerApp.log_level``) set to DEBUG or 10, with ``=`` or as the next word."""
    for index, word in enumerate(argv):
        if word == "--debug":
            return True
        match = _LEVEL_OPTION.match(word)
        if match:
            value = match.group(1)
            if value is None and index + 1 < len(argv):
                value = argv[index + 1]
            if value is not None and value.strip().upper() in ("DEBUG", "10"):
                return True
    return False


class InfoAndAbove(logging.Filter):
    """Keeps records of level INFO and above."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


def quiet_server_log(argv: list[str]) -> None:
    """Inside a Jupyter server, give its logger and traitlets' process logger an
    ``InfoAndAbove`` filter (once), unless ``argv`` asks for DEBUG. Called by
    grader/nbgrader_config.py, which the Formgrader loads before every button; elsewhere
    (nbgrader's command line) it does nothing."""
    server = sys.modules.get("jupyter_server.serverapp")
    if asks_for_debug(argv) or server is None or not server.ServerApp.initialized():
        return
    from traitlets.log import get_logger

    for logger in (server.ServerApp.instance().log, get_logger()):
        if not any(isinstance(f, InfoAndAbove) for f in logger.filters):
            logger.addFilter(InfoAndAbove())
