"""nbgrader's settings for JupyterLab started at the repository root (`make lab`): the
Formgrader (Nbgrader > Formgrader) manages the course in grader/. nbgrader then reads the
course's own settings, grader/nbgrader_config.py, as it does when run in grader/.
"""
from pathlib import Path

c = get_config()  # noqa: F821 (provided by nbgrader)
c.CourseDirectory.root = str(Path(__file__).resolve().parent / "grader")
# Formgrader's "Manage Assignments" panel would print the whole server configuration,
# the lab's login token included.
c.FormgradeExtension.debug = False
