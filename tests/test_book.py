"""The course website (`make book`): it builds from the committed notebooks without a warning, and shows them whole.

The book is built once, into a temporary folder, with warnings as errors (a missing image or a broken
cross-reference fails it). Skipped where the book extra (`pip install -e ".[book]"`) is not installed.
"""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("myst_nb")
pytest.importorskip("sphinx_book_theme")
bs4 = pytest.importorskip("bs4")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
_spec = importlib.util.spec_from_file_location("digitlab_book", ROOT / "book" / "digitlab_book.py")
book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book)


def sphinx(src: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    """sphinx-build with the book's configuration and warnings as errors."""
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(ROOT / "book"), "-d", str(out / "doctrees"),
               "-W", "--keep-going", "-q", *options, str(src), str(out / "html")]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def site(tmp_path_factory, pad_runtime) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("book")
    return sphinx(ROOT, out), out / "html"


def page(site, name: str):
    return bs4.BeautifulSoup((site[1] / name).read_text(), "html.parser")


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_the_book_builds_without_a_warning(site):
    result, html = site
    assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]
    assert (html / "index.html").exists() and (html / "book" / "index.html").exists()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_has_its_page_with_every_figure(site, notebook):
    soup = page(site, f"notebooks/{notebook.stem}.html")
    first = next(c for c in cells(notebook) if c["cell_type"] == "markdown")
    title = "".join(first["source"]).splitlines()[0].lstrip("# ").strip()
    assert soup.h1.get_text().strip().rstrip("#").strip() == title
    figures = sum("image/png" in o.get("data", {}) for c in cells(notebook) for o in c.get("outputs", []))
    images = [img["src"] for img in soup.select("article img")]
    assert len(images) == figures > 0
    for src in images:
        assert (site[1] / "notebooks" / src).resolve().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_tables_that_cells_display_as_markdown_are_tables(site, notebook):
    outputs = [o for c in cells(notebook) for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
    tables = ["".join(o["data"]["text/markdown"]) for o in outputs if "|---" in "".join(o["data"]["text/markdown"])]
    shown = page(site, f"notebooks/{notebook.stem}.html").select("div.cell_output table")
    for markdown in tables:  # the first column of each row is one cell of some table on the page
        rows = [line for line in markdown.splitlines() if line.startswith("|")][2:]  # after the header and |---|
        first = [row.split("|")[1].strip() for row in rows]
        text = [[tr.find(["td", "th"]).get_text().strip().replace("\u2019", "'") for tr in t.select("tbody tr")]
                for t in shown]  # the site prints apostrophes typographically
        assert first in text, markdown


def test_the_site_loads_nothing_from_another_host(site):
    loaded = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.I)
    pages = [p for p in site[1].rglob("*.html") if "_static" not in p.parts]
    assert len(pages) >= len(NOTEBOOKS) + 3
    for path in pages:
        assert not loaded.search(path.read_text()), path
    for css in site[1].glob("_static/**/*.css"):
        assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", css.read_text()), css


@pytest.mark.parametrize("chapter", ["02_architecture", "03_training", "04_overfitting_ablations",
                                     "05_error_analysis"])
def test_model_solutions_are_folded_as_in_jupyterlab(site, chapter):
    source = cells(ROOT / "notebooks" / f"{chapter}.ipynb")
    def solution(cell):  # folded in JupyterLab: a model solution or answer (not a check, not a graded check)
        meta = cell.get("metadata", {})
        graded_check = cell["cell_type"] == "code" and meta.get("nbgrader", {}).get("grade")
        return meta.get("jupyter", {}).get("source_hidden") and book.CHECK_TAG not in meta.get("tags", []) \
            and not graded_check

    hidden = [c for c in source if solution(c)]
    code = [c for c in hidden if c["cell_type"] == "code"]
    soup = page(site, f"notebooks/{chapter}.html")
    folded = soup.select("div.cell.tag_hide-input")
    assert len(folded) == len(code) > 0
    for cell in folded:
        assert cell.select_one("details > div.cell_input"), "a solution's code is not inside a fold"
        assert "Show the model solution" in cell.summary.get_text()
    assert len(soup.select("details.solution")) == len(hidden) - len(code)  # the written answers (03 has none)
    for details in soup.select("details.solution"):
        assert "Model answer" in details.get_text()
    assert not any("SOLUTION" in h.get_text() for h in soup.find_all(re.compile("^h[1-6]$")))
    checks = [c for c in soup.select("div.cell") if "# Check exercise" in c.get_text()]
    assert checks and not any(c.find("details") for c in checks), "the graded check cells stay visible"
    assert "HIDDEN TESTS" not in soup.get_text(), "a graded check cell shows its hidden tests"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_chapter_page_shows_a_check_cell(site, notebook):
    code = [c for c in cells(notebook) if c["cell_type"] == "code"]
    checks = [c for c in code if book.CHECK_TAG in c.get("metadata", {}).get("tags", [])]
    soup = page(site, f"notebooks/{notebook.stem}.html")
    assert checks and all("".join(c["source"]).startswith("# Checks:") for c in checks)
    assert "# Checks:" not in soup.get_text()
    assert len(soup.select("div.cell")) == len(code) - len(checks)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_going_deeper_sections_are_folded(site, notebook):
    headings = ["".join(c["source"]).splitlines()[0].lstrip("#").strip() for c in cells(notebook)
                if c["cell_type"] == "markdown" and "".join(c["source"]).lstrip("#").strip().startswith("Going deeper")
                and "".join(c["source"]).startswith("#")]
    folds = page(site, f"notebooks/{notebook.stem}.html").select("details.going-deeper > summary")
    shown = [f.get_text().split(" (a detour")[0].replace("\u2019", "'") for f in folds]  # typographic apostrophes
    assert shown == [h.replace("`", "") for h in headings]


def test_widgets_show_their_note_or_final_progress_and_load_no_widget_code(site):
    for name in ("05_error_analysis", "06_realtime_recognition"):
        notes = [o["data"]["text/plain"] for c in cells(ROOT / "notebooks" / f"{name}.ipynb")
                 for o in c.get("outputs", []) if book.WIDGET_VIEW in o.get("data", {})]
        shown = [n.get_text() for n in page(site, f"notebooks/{name}.html").select(".widget-note")]
        assert len(shown) == len(notes) > 0
        assert all("".join(note).strip() in text for note, text in zip(notes, shown, strict=True))
    training = page(site, "notebooks/03_training.html").get_text()
    assert "the paper's CNN, one epoch: 100%|██████████| 313/313" in training
    for path in site[1].rglob("*.html"):
        assert "widget-state+json" not in path.read_text() and "jupyter-widgets" not in path.read_text(), path


def test_the_landing_page_maps_every_chapter_with_its_times(site):
    soup = page(site, "book/index.html")
    links = {a["href"].split("#")[0] for a in soup.select("article a[href]")}
    guide = (ROOT / "notebooks" / "README.md").read_text().split("# Instructor guide")[0]
    times = [line.split("|")[2].strip() for line in guide.splitlines() if re.match(r"\| \d\d ·", line)]
    assert len(times) == len(NOTEBOOKS)
    for notebook in NOTEBOOKS:
        assert f"../notebooks/{notebook.stem}.html" in links
    text = " ".join(soup.get_text().split())
    assert all(" ".join(t.split()) in text for t in times)
    assert "make lab" in text
    nav = {a["href"] for a in soup.select("nav.bd-docs-nav a[href]")}
    assert {f"../notebooks/{n.stem}.html" for n in NOTEBOOKS} <= nav


def test_the_search_index_holds_every_chapter_and_its_words(site):
    index = (site[1] / "searchindex.js").read_text()
    assert '"dropout"' in index
    assert all(f"notebooks/{n.stem}" in index for n in NOTEBOOKS)


def test_broken_content_fails_the_build(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "page.md").write_text("# Page\n\n![a figure](missing.png)\n\nSee {ref}`nowhere`.\n")
    result = sphinx(tmp_path / "src", tmp_path, "-D", "root_doc=page", "-D", "include_patterns=page.md")
    assert result.returncode != 0
    assert "missing.png" in result.stderr and "nowhere" in result.stderr


def test_math_is_typeset_by_the_sites_own_mathjax(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "page.md").write_text("# Page\n\nOutput size $\\lfloor (n + 2p - k) / s \\rfloor + 1$.\n")
    result = sphinx(tmp_path / "src", tmp_path, "-D", "root_doc=page", "-D", "include_patterns=page.md")
    assert result.returncode == 0, result.stderr
    html = tmp_path / "html"
    soup = bs4.BeautifulSoup((html / "page.html").read_text(), "html.parser")
    scripts = [s["src"] for s in soup.select("script[src]")]
    assert "_static/mathjax/tex-chtml.js" in scripts
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert list((html / "_static" / "mathjax").rglob("MathJax_Main-Regular.woff"))


def test_prepare_notebook_folds_hidden_cells_and_leaves_its_input_alone():
    graded = {"nbgrader": {"grade": True, "grade_id": "ex1-check", "points": 1}, "jupyter": {"source_hidden": True}}
    nb = {"metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {"jupyter": {"source_hidden": True, "outputs_hidden": True}},
         "source": "x = 1", "outputs": []},
        {"cell_type": "markdown", "metadata": {}, "source": "**Why?** Say it."},
        {"cell_type": "markdown", "metadata": {"jupyter": {"source_hidden": True}},
         "source": "**Answer to exercise 1**\n\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->\n"},
        {"cell_type": "code", "metadata": {"tags": ["check"], "jupyter": {"source_hidden": True}},
         "source": "assert x == 1", "outputs": []},
        {"cell_type": "code", "metadata": graded, "outputs": [],
         "source": "# Check exercise 1\nassert isinstance(x, int)\n### BEGIN HIDDEN TESTS\nassert x == 1\n"
                   "### END HIDDEN TESTS\n"},
        {"cell_type": "code", "metadata": {}, "source": "y = 2", "outputs": []},
    ]}
    before = json.dumps(nb)
    code, prompt, written, check, plain = book.prepare_notebook(nb)["cells"]
    assert json.dumps(nb) == before
    assert code["metadata"]["tags"] == ["hide-input", "hide-output"]
    assert prompt["source"] == "**Why?** Say it."
    assert written["source"].startswith('<details class="solution">\n<summary>Answer to exercise 1: show the model '
                                        'answer</summary>')
    assert "**Model answer**\nBecause." in written["source"] and "SOLUTION" not in written["source"]
    assert check["metadata"]["tags"] == [] and "x == 1" not in check["source"]
    assert check["source"].startswith("# Check exercise 1\nassert isinstance(x, int)\n# (more checks run")
    assert plain["metadata"]["tags"] == [] and "mystnb" not in plain["metadata"]


def test_a_going_deeper_section_is_one_fold(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "page.md").write_text("# Page\n\nCore.\n\n## Going deeper: a detour\n\nAside.\n\n"
                                              "### Part two\n\nMore aside.\n\n## Back\n\nCore again.\n")
    result = sphinx(tmp_path / "src", tmp_path, "-D", "root_doc=page", "-D", "include_patterns=page.md")
    assert result.returncode == 0, result.stderr
    soup = bs4.BeautifulSoup((tmp_path / "html" / "page.html").read_text(), "html.parser")
    fold = soup.select_one("details.going-deeper")
    assert fold.summary.get_text().startswith("Going deeper: a detour")
    assert "Aside." in fold.get_text() and "More aside." in fold.get_text() and "Core again." not in fold.get_text()


def progress_state(value: float, total: float) -> dict:
    """The widget state tqdm leaves: an HBox of a label, a bar and the counts."""
    def model(name, **state):
        return {"model_name": name, "state": state}
    return {"box": model("HBoxModel", children=["IPY_MODEL_a", "IPY_MODEL_b", "IPY_MODEL_c"]),
            "a": model("HTMLModel", value="fit:\u2007100%"), "b": model("FloatProgressModel", value=value, max=total),
            "c": model("HTMLModel", value="\u20073/3\u2007[00:01&lt;00:00]")}


def test_widget_outputs_become_the_final_progress_line_or_the_widgets_note():
    view = {"model_id": "box", "version_major": 2, "version_minor": 0}
    progress = {"output_type": "display_data", "data": {book.WIDGET_VIEW: view, "text/plain": "fit: 0%"}}
    nb = {"metadata": {"widgets": {book.WIDGET_STATE: {"state": progress_state(3, 3)}}}, "cells": [
        {"cell_type": "code", "metadata": {}, "source": "", "outputs": [progress]},
        {"cell_type": "code", "metadata": {}, "source": "", "outputs": [
            {"output_type": "display_data", "data": {book.WIDGET_VIEW: {"model_id": "pad"},
                                                     "text/plain": "Drawing pad: run this cell in JupyterLab."}}]},
    ]}
    out = book.prepare_notebook(nb)
    assert "widgets" not in out["metadata"]
    assert out["cells"][0]["outputs"][0]["data"] == {"text/plain": "fit: 100%|██████████| 3/3 [00:01<00:00]"}
    note = out["cells"][1]["outputs"][0]["data"]
    assert book.WIDGET_VIEW not in note and "Drawing pad: run this cell in JupyterLab." in note["text/html"]


def test_the_course_map_refuses_a_chapter_missing_from_a_table():
    readme = (ROOT / "README.md").read_text()
    times = (ROOT / "notebooks" / "README.md").read_text()
    names = [n.stem for n in NOTEBOOKS]
    table = book.course_map(readme, times, names)
    assert table.count("\n") == len(names) + 2
    with pytest.raises(Exception, match="chapter 99"):
        book.course_map(readme, times, [*names, "99_new_chapter"])


def test_the_drawing_pad_has_its_page_linked_from_the_course_map(site):
    from digitlab.webpad import read_record

    record = read_record()
    assert 'href="pad.html"' in (site[1] / "book" / "index.html").read_text()
    soup = page(site, "book/pad.html")
    pads = soup.select("div.digit-pad[data-digit-pad]")
    assert len(pads) == 1
    pad = pads[0]
    assert pad.select_one("canvas.digit-pad-canvas")["aria-label"].startswith("Drawing area")
    assert pad.select_one("canvas.digit-pad-preview")["aria-label"]
    assert [b.get_text() for b in pad.select("button")] == ["Clear", "Undo stroke"]
    assert [th.get_text() for th in pad.select("table.digit-pad-bars th")] == [str(d) for d in range(10)]
    assert pad.select_one(".digit-pad-caption")["aria-live"] == "polite"
    about = pad.select_one(".digit-pad-about").get_text()
    assert record["checkpoint"] in about
    assert f"{record['test_correct'] / record['test_images']:.2%}" in about
    assert [s["src"] for s in soup.select("script[type=module]")] == ["../_static/pad/pad.js"]


def test_chapter_06_shows_the_pad_below_its_note(site):
    soup = page(site, "notebooks/06_realtime_recognition.html")
    pads = soup.select("div.digit-pad")
    assert len(pads) == 1
    note = pads[0].find_previous("div", class_="widget-note")
    assert note is not None and "Drawing pad" in note.get_text()
    assert soup.select_one(".digit-pad-here a")["href"] == "../book/pad.html"


def test_the_pad_s_files_are_in_the_site(site):
    out = site[1] / "_static" / "pad"
    for name in book.PAD_SOURCES + book.RUNTIME_FILES:
        assert (out / name).read_bytes() == ((book.PAD_DIR if name in book.PAD_SOURCES else book.RUNTIME) /
                                              name).read_bytes(), name
    assert (out / "ort-wasm-simd-threaded.wasm").read_bytes()[:4] == b"\0asm"
    model = (out / "digit_cnn.onnx").read_bytes()
    assert 1_000_000 < len(model) < 3_000_000
    assert sorted(p.name for p in out.iterdir()) == sorted([*book.PAD_SOURCES, *book.RUNTIME_FILES, "digit_cnn.onnx"])
