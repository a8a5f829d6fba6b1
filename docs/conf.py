"""Sphinx configuration of ferroptim's documentation site (`make docs`, output in site/html/).

The site is assembled from what the repository already has, so nothing is written twice:

* the front page and the user guide are README.md, cut at its ``## `` headings: the
  introduction, "Set up" and "Quickstart" make the front page, every other section a
  guide page (a new README section becomes a page by itself);
* the API reference is the docstrings (autodoc, Google-style "Args:" via napoleon), with
  one page per optimizer class exported by ``ferroptim``;
* the notebooks are every ``examples/*.ipynb``, executed at build time (myst-nb);
* docs/*.md (conventions, experiments, benchmarks) are pages as they are.

Generated sources go to docs/_generated/ (git-ignored), rewritten on every build.
"""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import ferroptim

ROOT = Path(__file__).resolve().parent.parent
GENERATED = Path(__file__).resolve().parent / "_generated"

project = "ferroptim"
author = "ferroptim contributors"
copyright = "ferroptim contributors"
release = version = ferroptim.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 served from the site itself, no CDN
    "myst_nb",
]

# The README's sections up to this one (set-up, quickstart, ...) make the front page; every
# later "## " section is a page of the user guide.
LAST_FRONT_PAGE_SECTION = "Documentation"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].strip("-")


def _readme_sections() -> tuple[str, list[tuple[str, str]]]:
    """README.md as (introduction, [(title, body)] per ``## `` section), fenced code kept whole."""
    text = (ROOT / "README.md").read_text()
    parts: list[list[str]] = [[]]
    titles: list[str] = []
    fenced = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            titles.append(line[3:].strip())
            parts.append([])
        parts[-1].append(line)
    return "".join(parts[0]), [(t, "".join(p)) for t, p in zip(titles, parts[1:])]


def _relink(markdown: str, prefix: str) -> str:
    """README links to docs/... made relative to a page in docs/<prefix>."""
    return re.sub(r"\]\(docs/", f"]({prefix}", markdown)


def _promote(markdown: str) -> str:
    """Every heading one level up (outside fenced code): a README section as a page."""
    lines, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        lines.append(line[1:] if not fenced and line.startswith("##") else line)
    return "".join(lines)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:  # unchanged sources are not rebuilt
        path.write_text(text)


def _optimizer_classes() -> list[type]:
    return [
        obj
        for name in ferroptim.__all__
        if inspect.isclass(obj := getattr(ferroptim, name))
        and issubclass(obj, ferroptim.Optimizer)
        and obj is not ferroptim.Optimizer
    ]


def _generate() -> None:
    if GENERATED.exists():
        shutil.rmtree(GENERATED)
    intro, sections = _readme_sections()
    titles = [title for title, _ in sections]
    split = titles.index(LAST_FRONT_PAGE_SECTION) + 1
    front = [body for _, body in sections[:split]]
    guide = sections[split:]
    pages = []
    for title, body in guide:
        page = f"guide/{_slug(title)}"
        _write(GENERATED / f"{page}.md", _promote(_relink(body, "../../")))
        pages.append(page)
    toctree = "\n".join(f"/_generated/{p}" for p in pages)
    _write(
        GENERATED / "guide" / "index.md",
        "# User guide\n\nThe sections of the README, a page each.\n\n"
        f"```{{toctree}}\n:maxdepth: 2\n\n{toctree}\n```\n",
    )
    _write(GENERATED / "index-readme.md", _relink(intro + "".join(front), ""))

    for cls in _optimizer_classes():
        options = ["   :show-inheritance:"] + (["   :members: step"] if "step" in vars(cls) else [])
        _write(
            GENERATED / "api" / "optimizers" / f"{cls.__name__}.md",
            f"# {cls.__name__}\n\n```{{eval-rst}}\n.. autoclass:: ferroptim.{cls.__name__}\n"
            + "\n".join(options)
            + "\n```\n",
        )
    for notebook in sorted((ROOT / "examples").glob("*.ipynb")):
        target = GENERATED / "examples" / notebook.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(notebook, target)


_generate()

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# -- MyST and notebooks -------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "force"  # every notebook runs at every build: a failing cell fails `make docs`
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_output_stderr = "warn"  # anything a cell writes to stderr is a warning, so an error under -W
nb_merge_streams = True

# -- autodoc ------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autodoc_default_options = {"exclude-members": "__init__, __new__"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True


def _keep_attribute_prose(app, what, name, obj, options, lines):
    """napoleon reads an attribute docstring's first ``words: more words`` as ``type:
    description``; ferroptim's types come from annotations, so that text is put back."""
    if what not in ("attribute", "data", "property"):
        return
    typed = [i for i, line in enumerate(lines) if line.startswith(":type: ")]
    if typed:
        prose_type = lines[typed[0]][len(":type: ") :]
        del lines[typed[0]]
        first = next(i for i, line in enumerate(lines) if line.strip())
        lines[first] = f"{prose_type}: {lines[first].strip()}"


def setup(app):
    app.connect("autodoc-process-docstring", _keep_attribute_prose, priority=600)  # after napoleon


# Cross-references inside ferroptim must resolve (a renamed function breaks the build);
# names from NumPy, matplotlib, mpi4py, torch and the standard library are not linked, as the
# site is built offline (no intersphinx).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(np|numpy|npt|matplotlib|mpi4py|MPI|typing|collections|pathlib|os|io|torch)\..*"),
    (r"py:.*", r"(Any|Callable|Iterable|Iterator|Mapping|Sequence|Figure|Path|PathOrFile|BinaryIO)"),
    (r"py:.*", r"(optional|None|int|float|str|bool|dict|list|tuple|object|type|bytes)"),
]

# -- HTML ---------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"ferroptim {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    # an optimizer's page is one class: its width goes to the math, not to a page outline
    "secondary_sidebar_items": {"_generated/api/optimizers/*": []},
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_static_path: list[str] = []
html_show_sourcelink = False
