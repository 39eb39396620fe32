"""Plumbing of the tests that use the course as people do: JupyterLab started by `make lab`
in a folder of its own, and Debian's headless Chromium driven by Selenium.

Selenium talks to Debian's chromedriver (`apt-get install chromium chromium-driver`), which
always matches Debian's Chromium; giving its path keeps Selenium Manager from downloading.
Screenshots go to build/browser-tests/ (git-ignored), one PNG per test step.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from waiting import wait_for

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "build" / "browser-tests"
# What `make lab` needs in a folder of its own: linked, so the lab runs the course's own
# Makefile, settings and venv (make follows the links for the venv's time stamp).
LAB_LINKS = ("Makefile", "scripts", "lab", "requirements.txt", "pyproject.toml", ".venv")
INSTALL_HINT = "apt-get install chromium chromium-driver; `make test` installs Selenium"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"Selenium is not installed ({INSTALL_HINT})"
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"{program} is not installed ({INSTALL_HINT})"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, token: str, method: str = "GET") -> tuple[int, bytes]:
    """An authenticated request to the Jupyter server: (status, body)."""
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as response:
        return response.status, response.read()


@dataclass
class Lab:
    """A running `make lab`: its folder, address, token, process and log file."""

    root: Path
    base: str
    token: str
    process: subprocess.Popen
    log: Path

    def url(self, path: str) -> str:
        """The browser's address of ``path`` (e.g. "lab/tree/x.ipynb"), token included."""
        return f"{self.base}/{path}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        """Call the server's REST API at ``path`` (e.g. "api/contents")."""
        return request(f"{self.base}/{path}", self.token, method)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def lab_root(folder: Path) -> Path:
    """``folder`` made a place where `make lab` runs the course's own set-up."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in LAB_LINKS:
        if (ROOT / name).exists():
            (folder / name).symlink_to(ROOT / name)
    return folder


def start_lab(root: Path, state: Path, make_args: tuple[str, ...] = (),
              env: dict[str, str] | None = None, timeout: float = 120) -> Lab:
    """`make lab MAKE_ARGS` in ``root``, headless, on a free port with a fresh token; wait
    until it answers. Its log, workspaces and user settings go to ``state``, not to
    ~/.jupyter."""
    port, token = free_port(), secrets.token_hex(16)
    state.mkdir(parents=True, exist_ok=True)
    args = (f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token} "
            f"--LabApp.workspaces_dir={state / 'workspaces'} "
            f"--LabApp.user_settings_dir={state / 'user-settings'}")
    log = state / "lab.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["make", "-s", "lab", *make_args, f"LAB_ARGS={args}"], cwd=root, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "JUPYTER_PLATFORM_DIRS": "1", **(env or {})})
    lab = Lab(root, f"http://127.0.0.1:{port}", token, process, log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"`make lab` ended with {process.returncode}:\n{lab.log_tail()}")
        try:
            lab.api("api/status")
            return lab
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                stop_lab(lab)
                raise AssertionError(f"JupyterLab did not start within {timeout:.0f} s:\n"
                                     f"{lab.log_tail()}") from None
            time.sleep(0.5)


def stop_lab(lab: Lab) -> int:
    """Shut the server down through its API (as File > Shut Down does); return make's exit
    status. A server that does not stop is killed with its process group."""
    try:
        lab.api("api/shutdown", method="POST")
        return lab.process.wait(timeout=30)
    except (urllib.error.URLError, ConnectionError, subprocess.TimeoutExpired):
        os.killpg(lab.process.pid, signal.SIGKILL)
        return lab.process.wait()


def chrome() -> WebDriver:
    """Headless Debian Chromium under Selenium, with a window large enough for the lab."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path=shutil.which("chromedriver")))
    driver.set_script_timeout(30)
    return driver


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save what the browser shows as build/browser-tests/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


# What a person does in JupyterLab, and what they see there.
CODE_CELLS_JS = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
if (!panel) return [];
return Array.from(panel.querySelectorAll('.jp-CodeCell')).map(cell => ({
  prompt: (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
  source: (cell.querySelector('.cm-line') || {}).textContent || '',
  outputs: Array.from(cell.querySelectorAll('.jp-OutputArea-output')).map(o => ({
    mime: o.dataset.mimeType || '', text: o.textContent,
    progress: o.querySelector('.widget-hprogress') ? 1 : 0})),
}));
"""
ERROR_LINE = re.compile(
    r"^\s*(Traceback \(most recent call last\)|[A-Za-z_][\w.]*(Error|Exception)\b)", re.M)
TEXT_PROGRESS_BAR = re.compile(r"\d+%\|")


def open_lab(driver: WebDriver, lab: Lab, workspace: str, path: str = "") -> None:
    """Open JupyterLab in a new workspace named ``workspace`` (so no earlier tabs come back),
    with ``path`` open if given; wait for the menu bar."""
    from selenium.webdriver.common.by import By

    driver.get(lab.url(f"lab/workspaces/{workspace}" + (f"/tree/{path}" if path else "")))
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel"), 90,
             "JupyterLab's menu bar")


def menu(driver: WebDriver, top: str, item: str) -> None:
    """Click ``item`` of the menu bar's menu ``top`` (e.g. "Run", "Run All Cells")."""
    from selenium.webdriver.common.by import By

    def labelled(selector: str, text: str):
        return [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.text == text]

    wait_for(lambda: labelled(".lm-MenuBar-itemLabel", top), 30, f"menu {top!r}")[0].click()
    wait_for(lambda: labelled(".lm-Menu-itemLabel", item), 10, f"{top} > {item}")[0].click()


def kernel_status(driver: WebDriver) -> str:
    """The open notebook's kernel status ("idle", "busy", ...; "" before it has one)."""
    return driver.execute_script(
        "const e = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
        ".jp-Notebook-ExecutionIndicator'); return e ? e.dataset.status : '';") or ""


def code_cells(driver: WebDriver) -> list[dict]:
    """The open notebook's code cells: prompt, first source line and outputs (MIME type, text,
    whether it holds a rendered progress-bar widget)."""
    return driver.execute_script(CODE_CELLS_JS)


def open_notebook(driver: WebDriver, lab: Lab, path: str, workspace: str) -> None:
    """Open the notebook ``path`` and wait until its kernel is idle."""
    open_lab(driver, lab, workspace, path)
    wait_for(lambda: code_cells(driver), 60, f"the cells of {path}")
    wait_for(lambda: kernel_status(driver) == "idle", 120, f"{path}'s kernel to start")


def run_all_cells(driver: WebDriver, timeout: float) -> float:
    """Edit > Clear Outputs of All Cells, then Run > Run All Cells; wait until the kernel is
    idle again with no cell queued. Returns the seconds the run took."""
    menu(driver, "Edit", "Clear Outputs of All Cells")
    wait_for(lambda: not any(c["outputs"] for c in code_cells(driver)), 30, "cleared outputs")
    start = time.monotonic()
    menu(driver, "Run", "Run All Cells")

    def finished() -> bool:
        cells = code_cells(driver)
        return (bool(cells) and not any("*" in c["prompt"] for c in cells)
                and re.search(r"\d", cells[0]["prompt"]) is not None
                and kernel_status(driver) == "idle")

    wait_for(finished, timeout, "Run All Cells to finish", poll=1)
    return time.monotonic() - start


def cell_problems(cells: list[dict]) -> list[str]:
    """What a person sees go wrong: code cells that did not run, error outputs, widgets that
    could not be displayed. One line each, naming the cell by its first line."""
    problems = []
    for number, cell in enumerate(cells, 1):
        name = f"code cell {number} `{cell['source'][:60]}`"
        if not re.search(r"\[\d+\]", cell["prompt"]):
            problems.append(f"{name} did not run (prompt {cell['prompt'].strip()!r})")
        for output in cell["outputs"]:
            error = ERROR_LINE.search(output["text"])
            if output["mime"].endswith("stderr") and error:
                problems.append(f"{name} shows an error: {error.group(0).strip()}")
            if "Error displaying widget" in output["text"]:
                problems.append(f"{name} shows 'Error displaying widget'")
    return problems


def progress_bars(cells: list[dict]) -> tuple[list[str], list[str]]:
    """(rendered progress-bar widgets, progress bars shown as plain text): their texts."""
    outputs = [o for cell in cells for o in cell["outputs"]]
    return ([o["text"] for o in outputs if o["progress"]],
            [o["text"] for o in outputs
             if not o["progress"] and TEXT_PROGRESS_BAR.search(o["text"])])
