"""`make lab` serves the course: start it headless, list lectures/ over REST, shut it down."""
from __future__ import annotations

import json
from pathlib import Path

from browser import start_lab, stop_lab

ROOT = Path(__file__).resolve().parent.parent


def test_make_lab_serves_the_lectures_folder(tmp_path):
    lab = start_lab(ROOT, tmp_path)
    try:
        status, body = lab.api("api/contents/lectures")
        listing = json.loads(body)
        assert status == 200 and listing["type"] == "directory"
        names = {item["name"] for item in listing["content"]}
        assert "README.md" in names
        status, page = lab.api("lab")
        assert status == 200 and b"JupyterLab" in page
    finally:
        code = stop_lab(lab)
    assert code == 0, lab.log_tail()
