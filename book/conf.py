"""Sphinx configuration of the course website: `make book` (sphinx-build -c book . build/book/html).

The source folder is the project's root, so the notebooks, the READMEs and the links between them stay where they
are; `include_patterns` picks the pages. Notebooks are rendered from their committed outputs, never executed.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

project = "digitlab"
html_title = "digitlab"
author = "the digitlab course"
copyright = "the digitlab course, MIT licence"

extensions = ["myst_nb", "sphinx-mathjax-offline", "digitlab_book"]

root_doc = "book/index"
include_patterns = [
    "book/index.md",
    "book/pad.md",
    "notebooks/[0-9]*.ipynb",
    "notebooks/README.md",
    "README.md",
    "data/README.md",
    "jupyter/README.md",
]
exclude_patterns = [".venv*", "build", ".git", "**/.ipynb_checkpoints", "data/MNIST", "models", "shared",
                    "**/node_modules"]

# Notebooks: the committed outputs, nothing executed; widgets are made static in digitlab_book.py, so no widget
# JavaScript is loaded from anywhere.
nb_execution_mode = "off"
nb_ipywidgets_js = {}
nb_merge_streams = True
nb_render_markdown_format = "myst"  # tables that cells display as Markdown render as tables, like the prose's
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# MathJax is served from the built site (_static/mathjax, copied by sphinx-mathjax-offline), never from a CDN.
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "sphinx_book_theme"
html_static_path = ["static"]
html_css_files = ["digitlab.css"]
html_extra_path = ["root"]
html_last_updated_fmt = None
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
html_context = {"default_mode": "auto"}  # without it the theme logs a console error on a reader's first visit
