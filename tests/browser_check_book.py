"""Open the built course website in headless Chromium and check every page, as a reader would.

Run by hand after `make book` (not part of `make test`): it needs Chromium and Playwright, e.g.

    python tests/browser_check_book.py --chromium /usr/bin/chromium

For every page: no console error, no failed request, no request to another host (the site must work offline),
every image loaded, math typeset by the site's own MathJax where a page has math. Then: the sidebar navigation
and the next/previous links lead to every chapter, the search page finds "dropout", the model solutions are
folded until clicked. `--math-probe` also builds a one-page site with a formula (with the book's configuration)
and checks that MathJax typesets it offline; the course pages themselves write formulas as plain text.
Screenshots go to build/book/screenshots/. Exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
IMAGES = """async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { img.loading = "eager"; }
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return imgs.map(img => [img.getAttribute("src"), img.naturalWidth]);
}"""
MATH = """async () => {
  const math = document.querySelectorAll(".math").length;
  if (math && window.MathJax && MathJax.startup) { await MathJax.startup.promise; }
  return [math, document.querySelectorAll("mjx-container").length];
}"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request."""

    def log_message(self, *args) -> None:
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A local static server for `folder` on a free port, in a background thread."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class Watch:
    """Console errors, page errors, failed requests and requests to other hosts, for one page."""

    def __init__(self, page: Page):
        self.problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed request: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        page.route("**/*", self._route)

    def _route(self, route, request) -> None:
        host = urlparse(request.url).hostname
        if request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            self.problems.append(f"request to another host: {request.url}")
            route.abort()


def check_page(page: Page, watch: Watch, url: str) -> dict:
    """Load one page; its problems, images and math."""
    watch.problems.clear()
    response = page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    images = page.evaluate(IMAGES)
    math, typeset = page.evaluate(MATH)
    broken = [src for src, width in images if width == 0]
    problems = list(watch.problems) + [f"broken image: {src}" for src in broken]
    if response is None or response.status != 200:
        problems.append(f"page answered {response and response.status}")
    if math and not typeset:
        problems.append(f"{math} math elements, none typeset by MathJax")
    return {"problems": problems, "images": len(images), "math": math, "typeset": typeset}


def check_navigation(page: Page, base: str, chapters: list[str]) -> list[str]:
    """The sidebar lists every chapter; next/previous links walk through them in order."""
    problems = []
    page.goto(base + "book/index.html")
    links = page.eval_on_selector_all("nav.bd-docs-nav a", "els => els.map(e => e.href)")
    for chapter in chapters:
        if not any(link.endswith(f"notebooks/{chapter}.html") for link in links):
            problems.append(f"navigation: no sidebar link to {chapter}")
    page.goto(base + f"notebooks/{chapters[0]}.html")
    for chapter in chapters[1:]:
        page.click("a.right-next")
        page.wait_for_load_state("load")
        if not page.url.endswith(f"notebooks/{chapter}.html"):
            problems.append(f"navigation: 'next' led to {page.url}, not {chapter}")
            break
    return problems


def check_search(page: Page, base: str, shots: Path) -> list[str]:
    """Typing a word into the search form lists pages that contain it."""
    page.goto(base + "book/index.html")
    page.keyboard.press("Control+k")
    field = page.locator("form.bd-search input[name=q]").first
    field.fill("dropout")
    field.press("Enter")
    page.wait_for_url("**/search.html?q=dropout*")
    page.wait_for_selector("#search-results li", timeout=15000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "search.png"))
    hits = page.eval_on_selector_all("#search-results li a", "els => els.map(e => e.href)")
    if not any("04_overfitting_ablations" in h for h in hits):
        return [f"search: 'dropout' did not find chapter 04 ({len(hits)} results)"]
    print(f"search 'dropout': {len(hits)} results, chapter 04 among them")
    return []


def check_solutions(page: Page, base: str, shots: Path) -> list[str]:
    """Chapter 04's first model solution is folded, and unfolds when its summary is clicked."""
    problems = []
    page.goto(base + "notebooks/04_overfitting_ablations.html")
    folds = page.locator("details.hide")
    written = page.locator("details.solution")
    print(f"chapter 04: {folds.count()} folded code parts, {written.count()} folded written answers")
    first = folds.first
    first.scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, -200)")
    code = first.locator("pre").first
    if code.is_visible():
        problems.append("solutions: the first model solution is visible before it is unfolded")
    page.screenshot(path=str(shots / "folded-solution.png"))
    first.locator("summary").click()
    if not code.is_visible():
        problems.append("solutions: the first model solution stays hidden after a click")
    answer = written.first.locator("p").first
    if answer.is_visible():
        problems.append("solutions: the first written answer is visible before it is unfolded")
    written.first.locator("summary").click()
    page.screenshot(path=str(shots / "unfolded-solution.png"))
    if not answer.is_visible():
        problems.append("solutions: the first written answer stays hidden after a click")
    return problems


def build_math_probe(python: str, out: Path) -> Path:
    """A one-page site with a formula, built with the book's configuration."""
    src = out / "src"
    src.mkdir(parents=True)
    (src / "probe.md").write_text("# Math probe\n\nThe output size is $\\lfloor (n + 2p - k) / s \\rfloor + 1$.\n\n"
                                  "$$\n\\sum_{i=1}^{n} x_i^2\n$$\n")
    subprocess.run([python, "-m", "sphinx", "-q", "-W", "-c", str(ROOT / "book"), "-D", "root_doc=probe",
                    "-D", "include_patterns=probe.md", "-b", "html", str(src), str(out / "html")], check=True)
    return out / "html"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "build" / "book" / "html")
    parser.add_argument("--shots", type=Path, default=ROOT / "build" / "book" / "screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--math-probe", action="store_true", help="also build and check a page with a formula")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="for --math-probe")
    args = parser.parse_args()
    if not (args.site / "book" / "index.html").exists():
        print(f"no site in {args.site}: run `make book` first")
        return 1
    args.shots.mkdir(parents=True, exist_ok=True)
    chapters = sorted(p.stem for p in (args.site / "notebooks").glob("[0-9]*.html"))
    pages = sorted(str(p.relative_to(args.site)) for p in args.site.rglob("*.html") if "_static" not in p.parts)
    server, base = serve(args.site)
    failures = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        watch = Watch(page)
        for name in pages:
            result = check_page(page, watch, base + name)
            failures += [f"{name}: {p}" for p in result["problems"]]
            status = "ok" if not result["problems"] else f"{len(result['problems'])} problems"
            print(f"{name:45} images {result['images']:3}  math {result['math']:2} (typeset {result['typeset']:2})  "
                  f"{status}")
        page.goto(base + "book/index.html")
        page.screenshot(path=str(args.shots / "landing.png"), full_page=True)
        page.goto(base + "notebooks/02_architecture.html")
        page.locator("img").nth(2).scroll_into_view_if_needed()
        page.screenshot(path=str(args.shots / "chapter-02.png"))
        page.goto(base + "notebooks/06_realtime_recognition.html")
        page.locator(".widget-note").first.scroll_into_view_if_needed()
        page.screenshot(path=str(args.shots / "widget-note.png"))
        failures += check_navigation(page, base, chapters)
        failures += check_search(page, base, args.shots)
        failures += check_solutions(page, base, args.shots)
        if args.math_probe:
            with tempfile.TemporaryDirectory() as tmp:
                probe_server, probe_base = serve(build_math_probe(args.python, Path(tmp)))
                result = check_page(page, watch, probe_base + "probe.html")
                page.screenshot(path=str(args.shots / "math-probe.png"))
                probe_server.shutdown()
            print(f"math probe: {result['math']} math elements, {result['typeset']} typeset, "
                  f"{len(result['problems'])} problems")
            failures += [f"math probe: {p}" for p in result["problems"]]
            if not result["typeset"]:
                failures.append("math probe: MathJax typeset nothing")
        browser.close()
    server.shutdown()
    print(f"{len(pages)} pages, {len(chapters)} chapters; screenshots in {args.shots}")
    for failure in failures:
        print("FAIL", failure)
    print("browser check:", "failed" if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
