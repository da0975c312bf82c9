"""The notebooks in notebooks/ run top to bottom without errors (they cannot rot).

Each notebook is executed with nbclient in a kernel running this interpreter; outputs are
not written back (the committed notebooks stay cleared). Their own cells assert what they
claim (parity below 1e-5, loss decreasing).
"""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_port_keras_model",
        "02_inspection_gallery",
        "03_train_with_optax",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), (
        f"{path.name}: commit notebooks with cleared outputs"
    )
    # The kernel must be this interpreter (the venv's ipykernel), whatever PATH says.
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ["PATH"]])
    )
    client = nbclient.NotebookClient(
        nb,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
