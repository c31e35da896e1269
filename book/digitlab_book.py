"""Sphinx extension for the course website: notebooks as learners see them in JupyterLab, and the course map.

Nothing here executes a notebook. At build time it
- folds the model solutions that JupyterLab folds (cell metadata `jupyter.source_hidden` / `outputs_hidden`):
  code cells get MyST-NB's `hide-input` / `hide-output` tags, written answers a `<details>` fold;
- drops the check cells (tag `check`): they tie the prose to the outputs when the notebook runs, not for reading;
- shows the exercises' graded check cells unfolded, without their hidden tests (nbgrader's `BEGIN HIDDEN TESTS`);
- folds each "Going deeper" section (a heading JupyterLab shows collapsed) into one `<details>`;
- replaces each widget output, which needs a running kernel, by what can be shown without one: a progress bar's
  final state as text, or the widget's own note (its `text/plain`) saying that it runs in JupyterLab;
- writes the course map on the landing page from the README's chapter table and `notebooks/README.md`'s times;
- puts the drawing pad on its page (book/pad.md) and below chapter 06's pad: the course network exported to ONNX
  (`digitlab.webpad`), run by ONNX Runtime Web in the reader's browser; its files are copied into `_static/pad`.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
COURSE_MAP = "<!-- course map -->"
CHECK_TAG = "check"            # a cell that checks the prose against the outputs: it runs, but is not shown
GOING_DEEPER = "Going deeper"  # a section heading that starts so is a detour, folded
PAD_MARK = "<!-- drawing pad -->"
PAD_NOTE = "Drawing pad:"       # the plain-text note of the notebook's pad (digitlab.widgets)
PAD_PAGES = ("book/pad", "notebooks/06_realtime_recognition")
PAD_DIR = Path(__file__).parent / "pad"
PAD_SOURCES = ("pad.js", "preprocess.js", "network.js")
# ONNX Runtime Web's files for its wasm (CPU) backend, single-threaded: no cross-origin isolation needed.
RUNTIME = PAD_DIR / "node_modules" / "onnxruntime-web" / "dist"
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
SOLUTION_PROMPT = {"code_prompt_show": "Show the model solution ({type})",
                   "code_prompt_hide": "Hide the model solution ({type})"}


def _text(source: str | list[str]) -> str:
    return source if isinstance(source, str) else "".join(source)


def _first_line(markdown: str) -> str:
    """The first line of a cell without its markdown emphasis, as JupyterLab shows it on a folded cell."""
    line = markdown.strip().splitlines()[0] if markdown.strip() else ""
    return re.sub(r"[*_`]", "", line).strip()


def fold_written_answer(markdown: str) -> str:
    """A folded written answer: the cell inside `<details>`, nbgrader's solution markers as a plain label."""
    marker = r"^(?:#+ |<!-- )(BEGIN|END) SOLUTION(?: -->)?\s*$"
    body = re.sub(marker, lambda m: "**Model answer**" if m.group(1) == "BEGIN" else "", markdown, flags=re.M).strip()
    first = _first_line(markdown)
    summary = html.escape(f"{first}: show the model answer" if first.startswith("Answer to exercise") else
                          f"{first} … (written answer and model answer, folded)")
    return f'<details class="solution">\n<summary>{summary}</summary>\n\n{body}\n\n</details>\n'


def strip_hidden_tests(source: str) -> str:
    """A graded check cell as a learner may read it: each hidden-tests block replaced by a one-line note."""
    note = "# (more checks run when the exercise is graded)"
    return re.sub(r"^### BEGIN HIDDEN TESTS$.*?^### END HIDDEN TESTS$", note, source, flags=re.M | re.S)


def _progress_text(model_id: str, state: dict[str, Any]) -> str | None:
    """The final line of a tqdm progress bar (an HBox of HTML, FloatProgress, HTML), or None for other widgets."""
    box = state.get(model_id, {})
    children = [c.removeprefix("IPY_MODEL_") for c in box.get("state", {}).get("children", [])]
    models = [state.get(c, {}) for c in children]
    if box.get("model_name") != "HBoxModel" or [m.get("model_name") for m in models] != \
            ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    label, bar, info = (m["state"] for m in models)
    filled = round(10 * bar["value"] / bar["max"]) if bar.get("max") else 0
    text = f"{html.unescape(label['value'])}|{'█' * filled}{' ' * (10 - filled)}|{html.unescape(info['value'])}"
    return text.replace("\u2007", " ")


def pad_html(prefix: str, record: dict, model_bytes: int) -> str:
    """The drawing pad's markup: canvas, clear and undo buttons, the 28x28 picture, ten probabilities, and which
    network it runs with its accuracy (from `record`, book/pad/model.json); `prefix` leads to the site's root."""
    rows = "".join(f'<tr><th scope="row">{d}</th><td class="digit-pad-bar" aria-hidden="true"><span></span></td>'
                   f'<td class="digit-pad-value">0.000</td></tr>' for d in range(10))
    correct, total = record["test_correct"], record["test_images"]
    checkpoint = html.escape(record["checkpoint"])
    return (
        '<div class="digit-pad" data-digit-pad>'
        '<div class="digit-pad-draw">'
        '<canvas class="digit-pad-canvas" width="280" height="280" role="img" aria-label="Drawing area: draw one '
        'digit here with a mouse, a pen or a finger; the prediction is written beside it">A drawing area: draw one '
        "digit with a mouse, a pen or a finger.</canvas>"
        '<div class="digit-pad-buttons"><button type="button" class="digit-pad-clear">Clear</button>'
        '<button type="button" class="digit-pad-undo">Undo stroke</button></div></div>'
        '<figure class="digit-pad-seen"><canvas class="digit-pad-preview" width="28" height="28" role="img" '
        'aria-label="The 28 by 28 picture the network receives, made from your drawing as to_mnist makes it">'
        "</canvas><figcaption>what the network sees</figcaption></figure>"
        '<div class="digit-pad-result"><p class="digit-pad-caption" aria-live="polite"></p>'
        '<table class="digit-pad-bars"><caption>probability of each digit</caption>'
        f"<tbody>{rows}</tbody></table></div>"
        '<p class="digit-pad-status" role="status">Loading the network …</p>'
        '<noscript><p class="digit-pad-status">The pad needs JavaScript.</p></noscript>'
        f'<p class="digit-pad-about">The network is the course network, <code>{checkpoint}</code> (the paper\'s CNN '
        "trained with the course recipe in chapter 03), exported to ONNX as chapter 06 exports it (BatchNorm "
        f"folded, float32, {model_bytes / 1e6:.1f} MB), and run by ONNX Runtime Web on this device's CPU: nothing "
        f"you draw leaves the browser. It reads {correct:,} of MNIST's {total:,} test digits right "
        f"({correct / total:.2%}, measured on the exported file).</p>"
        "</div>"
        f'<script type="module" src="{prefix}_static/pad/pad.js"></script>'
    )


def _widget_output(output: dict[str, Any], state: dict[str, Any], pad: str | None = None) -> dict[str, Any]:
    """A widget's output with the widget view replaced by static text or a note (the drawing pad's by `pad`)."""
    data = dict(output["data"])
    model_id = data.pop(WIDGET_VIEW)["model_id"]
    progress = _progress_text(model_id, state)
    if progress is not None:
        return {**output, "data": {"text/plain": progress}}
    note = _text(data.get("text/plain", "")).strip()
    if not note or note.startswith(("HBox(", "VBox(", "Output(", "<")):
        note = "An interactive widget: run this cell in JupyterLab to use it (it needs a running kernel)."
    box = ('<div class="admonition note widget-note"><p class="admonition-title">Interactive in JupyterLab</p>'
           f"<p>{html.escape(note)}</p></div>")
    if pad is not None and note.startswith(PAD_NOTE):  # the notebook's pad: its note, then the website's pad
        box += ('<p class="digit-pad-here">On this website, the pad below runs the same network in your browser '
                f'(also on <a href="../book/pad.html">its own page</a>):</p>{pad}')
    return {**output, "data": {"text/html": box, "text/plain": note}}


def prepare_notebook(nb: dict[str, Any], pad: str | None = None) -> dict[str, Any]:
    """The notebook as the website shows it: check cells dropped, solutions folded, graded checks without their
    hidden tests, widgets static (the drawing pad's note followed by `pad`, the website's pad, if given). The input
    is left unchanged."""
    nb = json.loads(json.dumps(nb))
    state = nb.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    nb["cells"] = [c for c in nb["cells"] if CHECK_TAG not in c.get("metadata", {}).get("tags", [])]
    for cell in nb["cells"]:
        hidden = cell.get("metadata", {}).get("jupyter", {})
        if cell["cell_type"] == "markdown" and hidden.get("source_hidden"):
            cell["source"] = fold_written_answer(_text(cell["source"]))
        elif cell["cell_type"] == "code":
            tags = cell["metadata"].setdefault("tags", [])
            if cell["metadata"].get("nbgrader", {}).get("grade"):  # a graded check: shown, its hidden tests not
                cell["source"] = strip_hidden_tests(_text(cell["source"]))
            elif hidden:
                tags.extend(tag for tag, key in [("hide-input", "source_hidden"), ("hide-output", "outputs_hidden")]
                            if hidden.get(key))
                cell["metadata"].setdefault("mystnb", {}).update(SOLUTION_PROMPT)
            cell["outputs"] = [_widget_output(o, state, pad) if WIDGET_VIEW in o.get("data", {}) else o
                               for o in cell.get("outputs", [])]
    return nb


def _table_rows(markdown: str, after: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the first markdown table after the line `after`."""
    lines = markdown.split(after, 1)[1].splitlines() if after in markdown else []
    rows = []
    for line in lines:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    if len(rows) < 3:
        raise ExtensionError(f"course map: no table after {after!r}")
    return rows[0], rows[2:]


def course_map(readme: str, notebooks_readme: str, notebooks: list[str], prefix: str = "../") -> str:
    """One table: each chapter with a link, what it teaches (README) and how long it takes (notebooks/README.md).

    `prefix` leads from the page that shows the map to the project's root.
    """
    _, taught = _table_rows(readme, "## The course")
    header, times = _table_rows(notebooks_readme, "# The notebooks")
    learn = {re.search(r"notebooks/(\d+)_", row[0]).group(1): row[1] for row in taught if "notebooks/" in row[0]}
    timing = {row[0].split(" ", 1)[0]: row for row in times}
    lines = [f"| chapter | what you learn | {header[1]} | {header[2]} |", "|---|---|---|---|"]
    for name in notebooks:
        number = name.split("_", 1)[0]
        if number not in learn or number not in timing:
            raise ExtensionError(f"course map: chapter {number} is missing from README.md or notebooks/README.md")
        title, reading, running = timing[number]
        lines.append(f"| [{title}]({prefix}notebooks/{name}.ipynb) | {learn[number]} | {reading} | {running} |")
    return "\n".join(lines) + "\n"


def _pad(app: Sphinx, docname: str) -> str | None:
    """The pad's markup for a page (None where the builder makes no HTML)."""
    made = getattr(app, "digitlab_pad", None)
    return pad_html("../" * docname.count("/"), made[0], made[1].stat().st_size) if made else None


def _source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    if docname.startswith("notebooks/") and Path(app.env.doc2path(docname)).suffix == ".ipynb":
        pad = _pad(app, docname) if docname in PAD_PAGES else None
        source[0] = json.dumps(prepare_notebook(json.loads(source[0]), pad))
    elif PAD_MARK in source[0]:
        source[0] = source[0].replace(PAD_MARK, f"```{{raw}} html\n{_pad(app, docname) or ''}\n```")
    elif docname == app.config.root_doc and COURSE_MAP in source[0]:
        root = Path(app.srcdir)
        notebooks = sorted(p.stem for p in (root / "notebooks").glob("[0-9]*.ipynb"))
        prefix = "../" * docname.count("/")
        table = course_map((root / "README.md").read_text(), (root / "notebooks" / "README.md").read_text(), notebooks,
                           prefix)
        source[0] = source[0].replace(COURSE_MAP, table)


def fold_going_deeper(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Wrap the body of every section titled "Going deeper: ..." in a `<details>` fold, its title as the summary."""
    for section in list(doctree.findall(nodes.section)):
        title = section.next_node(nodes.title)
        if title is None or not title.astext().startswith(GOING_DEEPER):
            continue
        summary = html.escape(title.astext())
        section.insert(section.index(title) + 1, nodes.raw(
            "", f'<details class="going-deeper"><summary>{summary} (a detour: click to open)</summary>', format="html"))
        section.append(nodes.raw("", "</details>", format="html"))


def export_pad(app: Sphinx) -> None:
    """Before reading: check the pad's record against the committed course network and export that network to
    ONNX (a few seconds); refuse to build without ONNX Runtime Web's files (`npm ci` in book/pad)."""
    if app.builder.format != "html":
        return
    from digitlab import webpad
    from digitlab.errors import DigitlabError

    missing = [name for name in RUNTIME_FILES if not (RUNTIME / name).exists()]
    if missing:
        raise ExtensionError(f"the drawing pad needs ONNX Runtime Web ({', '.join(missing)} are missing from "
                             f"{RUNTIME}): run `npm ci` in book/pad (make book does).")
    try:
        record = webpad.read_record()
        model = webpad.export_pad_model(Path(app.doctreedir) / "pad" / webpad.MODEL_FILE)
    except DigitlabError as err:
        raise ExtensionError(f"the drawing pad: {err}") from err
    app.digitlab_pad = (record, model)


def pad_pages(app: Sphinx, env, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    """The pages with the pad are read again on every build: the network and its record may have changed."""
    return [name for name in PAD_PAGES if name in env.found_docs]


def copy_pad(app: Sphinx, exception: Exception | None) -> None:
    """After an HTML build: the pad's scripts, the runtime's files and the exported network into `_static/pad`."""
    if exception is not None or not hasattr(app, "digitlab_pad"):
        return
    out = Path(app.outdir) / "_static" / "pad"
    out.mkdir(parents=True, exist_ok=True)
    for source in [PAD_DIR / name for name in PAD_SOURCES] + [RUNTIME / name for name in RUNTIME_FILES]:
        shutil.copyfile(source, out / source.name)
    model = app.digitlab_pad[1]
    shutil.copyfile(model, out / model.name)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the build-time hooks."""
    app.connect("builder-inited", export_pad)
    app.connect("env-get-outdated", pad_pages)
    app.connect("build-finished", copy_pad)
    app.connect("source-read", _source_read)
    app.connect("doctree-resolved", fold_going_deeper)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
