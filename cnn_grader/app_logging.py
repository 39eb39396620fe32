"""What nbgrader's applications log where the Formgrader shows it: INFO, not DEBUG.

Since traitlets 5.2 an application's logger is at DEBUG and only its stderr handler
filters at the configured level. The Formgrader's buttons run the applications in the
server (``nbgrader.utils.capture_log``) with a handler of their own that has no level,
so the report after one autograde held every DEBUG line (31 kB). ``logging_config``
puts the applications' loggers at INFO, unless the command line asks for DEBUG.
"""
from __future__ import annotations

import re

import nbgrader.apps

APP_LOGGERS = tuple(sorted(name for name in dir(nbgrader.apps) if name.endswith("App")))
_LEVEL_OPTION = re.compile(r"--(?:[A-Za-z]+\.)?log[-_]level(?:=(.*))?$")


def asks_for_debug(argv: list[str]) -> bool:
    """Whether ``argv`` asks for DEBUG: ``--debug``, or ``--log-level`` (also
    ``--Application.log_level``) set to DEBUG or 10, with ``=`` or as the next word."""
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


def logging_config(argv: list[str]) -> dict:
    """traitlets' ``Application.logging_config``: every nbgrader application's logger at
    INFO, or at DEBUG where ``argv`` asks for it."""
    level = "DEBUG" if asks_for_debug(argv) else "INFO"
    return {"loggers": {name: {"level": level} for name in APP_LOGGERS}}
