"""examples/: the notebook runs top to bottom on the shipped model and shows its tables and charts inline."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "examples", "tune_precisions.ipynb")


def _outputs(cell, mime):
    return [output["data"][mime] for output in cell.get("outputs", []) if mime in output.get("data", {})]


# Minutes: converts the shipped model at every precision offered here, validates, benchmarks and tunes.
@pytest.mark.slow
def test_tune_precisions_notebook_runs_and_renders(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and "DURATION = " in parameters[0].source
    # Short timings (as papermill would inject them): the run is checked, not the figures.
    parameters[0].source = parameters[0].source.replace("DURATION = 2.0", "DURATION = 0.3")
    monkeypatch.setenv("PYTHONPATH", REPO)  # the kernel imports this checkout's toolkit
    nbclient.NotebookClient(notebook, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    markdown = [text for cell in code for text in _outputs(cell, "text/markdown")]
    images = [image for cell in code for image in _outputs(cell, "image/png")]
    assert any(text.startswith("**PASS**") for text in markdown), "a validation report renders as a table"
    assert any("| batch size | baseline p50 (ms) |" in text for text in markdown), "a benchmark renders as a table"
    assert any("| candidate | status |" in text for text in markdown), "the tune table renders"
    assert len(images) >= 2, "the benchmark and tune charts show inline"
    errors = [output for cell in code for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert errors == []
