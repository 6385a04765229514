"""A plugin distribution built from its own pyproject, installed, and selected by name.

Nothing in visum/ knows about it: it arrives through the `visum` entry-point group.
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from visum.cache import Cache
from visum.config import make_config
from visum.manifest import Manifest
from visum.pipeline import Pipeline
from visum.plugins import build_catalogue

DIST = Path(__file__).parent / "thirdparty" / "visum-grid-proposer"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(DIST)],
        check=True,
    )
    assert list(target.glob("visum_grid_proposer-0.1.0.dist-info/entry_points.txt"))
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    sys.modules.pop("visum_grid_proposer", None)
    importlib.invalidate_caches()


def test_installed_distribution_is_found_through_its_entry_point(site):
    catalogue = build_catalogue()
    info = catalogue.get("proposer", "grid")
    assert info.source == "visum-grid-proposer 0.1.0"
    assert info.cls.__module__ == "visum_grid_proposer"


def test_pipeline_runs_with_the_third_party_component(site, parts_folder, tmp_path):
    config = make_config({"images": str(parts_folder), "saliency": "gradient", "proposer": "grid",
                          "options": {"proposer": {"scales": [0.15, 0.25], "step": 0.5}}})
    result = Pipeline(config, tmp_path / "out", catalogue=build_catalogue(), cache=Cache(tmp_path / "c")).run()
    m = Manifest.model_validate_json((tmp_path / "out" / "manifest.json").read_text())
    assert m.config["proposer"] == "grid"
    assert m.summaries
    sides = {round((mem.part_bbox[2] - mem.part_bbox[0]) / 128, 2) for s in m.summaries for mem in s.members}
    assert sides <= {0.15, 0.16, 0.25}  # every part is one of the grid's windows
    assert result.report.is_file()


def test_visum_plugins_lists_it_with_its_distribution(site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "visum.cli", "plugins", "--kind", "proposer"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "grid" in out and "visum-grid-proposer 0.1.0" in out and "--opt proposer.scales=" in out
