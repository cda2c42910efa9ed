"""Executes the notebooks on a tiny world; their cells end with assertions on what they show."""

import os

import pytest

NOTEBOOKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "notebooks")
NOTEBOOKS = ["01_explore_dataset.ipynb", "02_cold_start.ipynb", "03_serving.ipynb",
             "04_multimodal_integration.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tiny_world, tiny_examples, tiny_cache, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    # The kernel is a subprocess: it inherits this environment. jupyter_client starts the
    # "python3" kernel spec (argv[0] == "python") with sys.executable, i.e. this venv.
    monkeypatch.setenv("PPM_DATASET", tiny_world)
    # 02_cold_start and 03_serving read a demo-like folder: the tiny world, examples, cache.
    root = tmp_path / "root"
    root.mkdir()
    for name_, src in (("dataset", tiny_world), ("examples", tiny_examples[0]),
                       ("embeddings", tiny_cache)):
        os.symlink(src, root / name_)
    monkeypatch.setenv("PPM_RUN_ROOT", str(root))
    monkeypatch.setenv("PPM_PRESET", "tiny")
    monkeypatch.setenv("PPM_NOTEBOOK_REQUESTS", "20")
    with open(os.path.join(NOTEBOOKS_DIR, name), encoding="utf-8") as f:
        nb = nbformat.read(f, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": NOTEBOOKS_DIR}})
    client.execute()  # raises CellExecutionError if any cell (or assertion in it) fails
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
