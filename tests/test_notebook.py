"""The example notebook runs from top to bottom on a clean checkout, offline (nbclient, as CI does)."""

import importlib
import sys
from pathlib import Path

import nbformat

EXAMPLES = Path(__file__).parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
execute = importlib.import_module("execute").execute


def test_example_notebook_executes(tmp_path):
    nb = execute(EXAMPLES / "visum-in-a-notebook.ipynb", tmp_path / "executed.ipynb")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"], "no warnings shown"
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(html) == 1 and "summaries kept of" in html[0] and "data:image/jpeg;base64," in html[0]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the mask over the photo
    saved = [o.text for o in outputs if o.output_type == "stream" and "report.html" in o.text]
    assert saved and "manifest.json" in saved[0]
    assert nbformat.read(tmp_path / "executed.ipynb", as_version=4).cells[0].cell_type == "markdown"
