"""Open every chapter in the learner's JupyterLab in headless Chromium and check what a learner sees.

Run by hand (not part of `make test`): it needs Chromium and Playwright, e.g.

    python tests/browser_check_lab.py --chromium /usr/bin/chromium

It starts JupyterLab as `make lab` does (the learner's configuration in jupyter/, no token, on 127.0.0.1),
opens each notebook without running it and checks: the check cells and the model solutions are folded (their
code is not on the page, only their first line), no nbgrader marker ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS") and
at most 5 assert lines are shown, every written
answer's question is shown, "Going deeper" headings are collapsed. Screenshots of each chapter's top and of its
exercises go to build/lab-screenshots/. Exits 1 if anything failed.

`--pad` checks chapter 06's drawing pad instead, live: a scratch notebook with the pad of the course network is
run in the learner's JupyterLab, ten digits from `digitlab.strokes` are drawn on it with the mouse (made by
`--python`, which has digitlab), then two digits side by side and a speck; the caption must name the digit, then
say what is wrong. Screenshots of each go to build/lab-screenshots/pad-*.png.
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


PAD_CELL = """from digitlab.checkpoints import course_model
from digitlab.infer import Predictor
from digitlab.widgets import drawing_pad

drawing_pad(Predictor(course_model()[0]))"""
STROKES = """import json, numpy as np
from digitlab.strokes import pen_digit
from digitlab.widgets import PAD_SIZE
rng = np.random.default_rng(6)
print(json.dumps({"size": PAD_SIZE, "strokes": [[s.tolist() for s in pen_digit(d, rng, PAD_SIZE)] for d in range(10)]}))
"""


def draw(page, canvas, strokes: list[list[list[float]]], size: int) -> None:
    """Draw `strokes` (pad units) with the mouse on the pad's canvas, whatever its size on screen."""
    box = canvas.bounding_box()
    scale = box["width"] / size
    for stroke in strokes:
        points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=2)
        page.mouse.up()


def caption_after(page, pad, strokes, size: int) -> str:
    """Clear the pad, draw `strokes`, and return the caption once the kernel has answered."""
    pad.get_by_role("button", name="clear").click()
    page.wait_for_timeout(500)
    draw(page, pad.locator("canvas").last, strokes, size)
    page.wait_for_timeout(2500)
    return pad.locator(".widget-html").first.inner_text()


def check_pad(page, port: int, python: str) -> list[str]:
    """Run the drawing pad in JupyterLab, draw on it, and return what is wrong with what it says."""
    made = json.loads(subprocess.run([python, "-c", STROKES], capture_output=True, text=True, check=True).stdout)
    size, problems = made["size"], []
    scratch = ROOT / "notebooks" / "pad_check_scratch.ipynb"
    scratch.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "source": PAD_CELL,
                                              "outputs": [], "execution_count": None}],
                                   "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
                                   "nbformat": 4, "nbformat_minor": 5}))
    try:
        page.goto(f"http://127.0.0.1:{port}/lab/workspaces/check-pad/tree/{scratch.name}?reset")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_timeout(3000)
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.keyboard.press("Shift+Enter")
        pad = page.locator(".jp-OutputArea-output").filter(has=page.locator("canvas")).first
        pad.wait_for(timeout=180_000)
        page.wait_for_timeout(2000)
        right = 0
        for digit, strokes in enumerate(made["strokes"]):
            said = caption_after(page, pad, strokes, size)
            right += said.startswith(f"predicted {digit}")
            print(f"  drew a {digit}: {said}")
            if digit == 7:
                page.screenshot(path=SHOTS / "pad-digit.png")
        if right < 9:
            problems.append(f"only {right} of 10 drawn digits read right")
        one = made["strokes"][1]
        two = [[[x * 0.45, y] for x, y in s] for s in one] + [[[x * 0.45 + size * 0.5, y] for x, y in s] for s in one]
        said = caption_after(page, pad, two, size)
        print(f"  drew two 1s side by side: {said}")
        page.screenshot(path=SHOTS / "pad-two-digits.png")
        if "side by side" not in said:
            problems.append(f"two digits: the caption says {said!r}")
        speck = [[[size / 2, size / 2], [size / 2 + 1, size / 2]]]
        said = caption_after(page, pad, speck, size)
        print(f"  drew a speck: {said}")
        page.screenshot(path=SHOTS / "pad-speck.png")
        if not said.startswith("No digit found"):
            problems.append(f"a speck: the caption says {said!r}")
    finally:
        scratch.unlink(missing_ok=True)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="Python with JupyterLab")
    parser.add_argument("--pad", action="store_true", help="check chapter 06's drawing pad, live, instead")
    args = parser.parse_args()
    SHOTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lab = start_lab(args.python, port, Path(tempfile.mkdtemp()))
    failed = False
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for path in [] if args.pad else NOTEBOOKS:
                problems = check_notebook(page, port, path)
                print(f"{path.stem}: {'ok' if not problems else '; '.join(problems)}")
                failed |= bool(problems)
            if args.pad:
                problems = check_pad(page, port, args.python)
                print(f"drawing pad: {'ok' if not problems else '; '.join(problems)}")
                failed |= bool(problems)
            browser.close()
    finally:
        lab.terminate()
        lab.wait(timeout=30)
    print(f"screenshots in {SHOTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
