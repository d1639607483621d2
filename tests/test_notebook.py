"""The committed notebook runs top to bottom against the shipped model and draws its figures."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "attention_tour.ipynb"


def test_attention_tour_executes_and_draws_every_figure():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 7  # two general-attention maps, a self-attention map, question weights,
    # the views' hit rates, the default view's heat, the ablation
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "10 dev questions on 2 passages" in printed and "model:" in printed
