"""Draw digits on the website's pad in headless Chromium, as a reader would with a mouse.

Run by hand after `make book` (not part of `make test`): it needs Chromium and Playwright, e.g.

    python tests/browser_check_pad.py --chromium /usr/bin/chromium --python .venv/bin/python

It serves build/book/html on 127.0.0.1 (or uses the server that `--url` names) and, on book/pad.html, draws 20
pen digits from `digitlab.strokes` (two of each, made by `--python`, which has digitlab) with the mouse, scaled to
the canvas. It checks that at least 18 are read right, that no console error or failed request occurs and nothing
is requested from another host, that a blank pad and a speck get a message instead of bars, that Clear is reachable
with the keyboard, and that chapter 06's page has a working pad. It reports the time from each stroke's end to the
bars showing its prediction, as the page measures it (performance.now()), median and slowest, with the machine.
Screenshots (a drawn digit; a 390-pixel-wide viewport; the dark colour scheme) go to build/book/screenshots/.
Exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from browser_check_book import Watch, serve
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
STROKES = """
import json, numpy as np, torch
from digitlab.measure import cpu_name
from digitlab.strokes import pen_digit
rng = np.random.default_rng(2029)
digits = [d for d in range(10) for _ in range(2)]
print(json.dumps({"machine": f"{cpu_name()}, {torch.backends.cpu.get_cpu_capability()}",
                  "digits": digits, "strokes": [[s.tolist() for s in pen_digit(d, rng, 280)] for d in digits]}))
"""


def draw(page: Page, pad: str, strokes: list[list[list[float]]]) -> None:
    """Draw `strokes` (280x280 canvas units) with the mouse on the pad's canvas, whatever its size on screen."""
    canvas = page.locator(f"{pad} .digit-pad-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    scale = box["width"] / 280
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.up()


def settled(page: Page, pad: str, before: int, strokes: int) -> str:
    """Wait until every stroke's end has its prediction shown; the pad's prediction ('' for a message)."""
    page.wait_for_function("([n]) => window.digitPad.latencies.length >= n", arg=[before + strokes], timeout=20000)
    return page.locator(pad).get_attribute("data-prediction")


def ready(page: Page, url: str, pad: str = ".digit-pad") -> None:
    page.goto(url, wait_until="load")
    page.wait_for_selector(f"{pad}[data-state=ready]", timeout=30000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "build" / "book" / "html")
    parser.add_argument("--shots", type=Path, default=ROOT / "build" / "book" / "screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="a Python with digitlab")
    parser.add_argument("--url", help="check the site a server already serves here (e.g. http://localhost:8000/, "
                                      "python3 -m http.server -d build/book/html) instead of serving --site")
    args = parser.parse_args()
    if not args.url and not (args.site / "_static" / "pad" / "pad.js").exists():
        print(f"no pad in {args.site}: run `make book` first")
        return 1
    made = json.loads(subprocess.run([args.python, "-c", STROKES], capture_output=True, text=True, check=True,
                                     cwd=ROOT).stdout)
    args.shots.mkdir(parents=True, exist_ok=True)
    server, base = (None, args.url.rstrip("/") + "/") if args.url else serve(args.site)
    failures: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        watch = Watch(page)
        ready(page, base + "book/pad.html")
        caption = page.locator(".digit-pad-caption")
        if page.locator(".digit-pad-bars").is_visible() or "Draw a digit" not in caption.inner_text():
            failures.append("a blank pad shows bars, or no message")
        right, shown = 0, []
        for digit, strokes in zip(made["digits"], made["strokes"], strict=True):
            page.click(".digit-pad-clear")
            before = page.evaluate("window.digitPad.latencies.length")
            draw(page, ".digit-pad", strokes)
            seen = settled(page, ".digit-pad", before, len(strokes))
            right += seen == str(digit)
            shown.append(f"{digit}->{seen or '-'}")
            if digit == 7 and right == len(shown):
                page.screenshot(path=str(args.shots / "pad-desktop.png"))
                page.locator(".digit-pad").screenshot(path=str(args.shots / "pad.png"))
        print(f"drawn with the mouse: {right} of {len(shown)} right ({' '.join(shown)})")
        if right < 18:
            failures.append(f"only {right} of 20 drawn digits read right")
        page.screenshot(path=str(args.shots / "pad-desktop-last.png"))
        latencies = page.evaluate("window.digitPad.latencies")

        page.click(".digit-pad-clear")
        before = page.evaluate("window.digitPad.latencies.length")
        draw(page, ".digit-pad", [[[140, 140], [143, 141]]])
        if settled(page, ".digit-pad", before, 1) != "" or page.locator(".digit-pad-bars").is_visible():
            failures.append("a speck was read as a digit")
        print(f"a speck: {caption.inner_text()!r}")
        page.click(".digit-pad-clear")
        page.locator("body").click(position={"x": 5, "y": 5})
        for _ in range(300):   # Tab from the top until Clear has the focus
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.classList.contains('digit-pad-clear')"):
                print("Clear is reachable with the Tab key")
                break
        else:
            failures.append("Clear is not reachable with the Tab key")
        failures += [f"pad page: {p}" for p in watch.problems]

        for name, options in [("pad-phone", {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                                             "is_mobile": True, "has_touch": True}),
                              ("pad-dark", {"viewport": {"width": 1280, "height": 900}, "color_scheme": "dark"})]:
            other = browser.new_page(**options)
            watch_other = Watch(other)
            ready(other, base + "book/pad.html")
            draw(other, ".digit-pad", made["strokes"][4])
            seen = settled(other, ".digit-pad", 0, len(made["strokes"][4]))
            width = other.evaluate("document.documentElement.scrollWidth")
            print(f"{name}: drew a {made['digits'][4]}, read {seen}; page {width} px wide")
            if width > options["viewport"]["width"]:
                failures.append(f"{name}: the page scrolls sideways ({width} px)")
            other.locator(".digit-pad").scroll_into_view_if_needed()
            other.screenshot(path=str(args.shots / f"{name}.png"))
            failures += [f"{name}: {p}" for p in watch_other.problems]
            other.close()

        watch.problems.clear()
        ready(page, base + "notebooks/06_realtime_recognition.html")
        before = page.evaluate("window.digitPad.latencies.length")
        draw(page, ".digit-pad", made["strokes"][6])
        seen = settled(page, ".digit-pad", before, len(made["strokes"][6]))
        page.screenshot(path=str(args.shots / "pad-chapter-06.png"))
        print(f"chapter 06: drew a {made['digits'][6]}, read {seen}")
        if seen != str(made["digits"][6]):
            failures.append(f"chapter 06's pad read {seen!r} for a {made['digits'][6]}")
        failures += [f"chapter 06: {p}" for p in watch.problems]
        browser.close()
    if server is not None:
        server.shutdown()
    print(f"stroke end to bars: median {statistics.median(latencies):.1f} ms, slowest {max(latencies):.1f} ms over "
          f"{len(latencies)} strokes (headless Chromium, {made['machine']})")
    for failure in failures:
        print("FAIL", failure)
    print("pad check:", "failed" if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
