"""Open every chapter in the learner's JupyterLab in headless Chromium and check what a learner sees.

Run by hand (not part of `make test`): it needs Chromium and Playwright, e.g.

    python tests/browser_check_lab.py --chromium /usr/bin/chromium

It starts JupyterLab as `make lab` does (the learner's configuration in jupyter/, no token, on 127.0.0.1),
opens each notebook without running it and checks: the check cells and the model solutions are folded (their
code is not on the page, only their first line), no nbgrader marker ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS") and
at most 5 assert lines are shown, every written
answer's question is shown, "Going deeper" headings are collapsed. Screenshots of each chapter's top and of its
exercises go to build/lab-screenshots/. Exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
SHOTS = ROOT / "build" / "lab-screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(python: str, port: int, settings: Path) -> subprocess.Popen:
    """JupyterLab on notebooks/ with the learner's configuration, ready to serve.

    Its one other setting renders every cell at once (JupyterLab otherwise renders only the cells near the
    viewport), so that the checks see the whole notebook.
    """
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    env = {**os.environ, "JUPYTER_CONFIG_PATH": str(ROOT / "jupyter")}
    command = [python, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1", "--allow-root",
               "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={ROOT / 'notebooks'}",
               f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={settings / 'workspaces'}"]
    lab = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=1)
            return lab
        except OSError:
            time.sleep(0.5)
    lab.kill()
    raise RuntimeError("JupyterLab did not start")


def expected(path: Path) -> dict:
    """What the notebook file says a learner should see: folded cells, questions, collapsed headings."""
    cells = json.loads(path.read_text())["cells"]
    folded = [c for c in cells if c.get("metadata", {}).get("jupyter", {}).get("source_hidden")]
    questions = [" ".join("".join(b["source"]).split())[:60] for b, c in zip(cells, cells[1:], strict=False)
                 if c["cell_type"] == "markdown" and c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    deeper = [c for c in cells if c["cell_type"] == "markdown" and c["metadata"].get("jp-MarkdownHeadingCollapsed")]
    return {"folded": len(folded), "questions": questions, "deeper": len(deeper)}


def check_notebook(page, port: int, path: Path) -> list[str]:
    """Open one notebook and return what is wrong with it, as a learner would see it."""
    problems = []
    page.goto(f"http://127.0.0.1:{port}/lab/workspaces/check-{path.stem}/tree/{path.name}?reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_timeout(3000)
    want = expected(path)
    notebook = page.locator(".jp-Notebook").first
    placeholders = notebook.locator(".jp-InputPlaceholder").count()
    if placeholders < want["folded"]:
        problems.append(f"{want['folded']} folded cells in the file, {placeholders} folded on the page")
    text = notebook.inner_text()
    for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS"):
        if marker in text:
            problems.append(f"the page shows {marker!r}")
    asserts = sum(line.lstrip().startswith("assert ") for line in text.splitlines())
    if asserts > 5:
        problems.append(f"the page shows {asserts} assert lines")
    flat = " ".join(text.split())
    for question in want["questions"]:
        words = [w.strip("*_`") for w in question.split()[:6]]
        if not all(w in flat for w in words):
            problems.append(f"the question {question!r} is not shown")
    collapsed = notebook.locator(".jp-collapseHeadingButton.jp-mod-collapsed").count()
    if collapsed < want["deeper"]:
        problems.append(f"{want['deeper']} Going deeper headings in the file, {collapsed} collapsed on the page")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{path.stem}-top.png")
    exercises = notebook.locator(".jp-MarkdownCell h2", has_text="Exercises")
    if exercises.count():
        exercises.first.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        page.screenshot(path=SHOTS / f"{path.stem}-exercises.png")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="Python with JupyterLab")
    args = parser.parse_args()
    port = free_port()
    lab = start_lab(args.python, port, Path(tempfile.mkdtemp()))
    failed = False
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for path in NOTEBOOKS:
                problems = check_notebook(page, port, path)
                print(f"{path.stem}: {'ok' if not problems else '; '.join(problems)}")
                failed |= bool(problems)
            browser.close()
    finally:
        lab.terminate()
        lab.wait(timeout=30)
    print(f"screenshots in {SHOTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
