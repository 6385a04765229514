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
BROKEN = Path(__file__).parent / "thirdparty" / "visum-broken-plugin"  # fails to import, installed beside it


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(DIST), str(BROKEN)],
        check=True,
    )
    assert list(target.glob("visum_grid_proposer-0.1.0.dist-info/entry_points.txt"))
    assert list(target.glob("visum_broken_plugin-0.1.0.dist-info/entry_points.txt"))
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
    [broken] = catalogue.broken  # the plugin that fails to import does not take the others down
    assert (broken.name, broken.source) == ("broken", "visum-broken-plugin 0.1.0")
    assert "ModuleNotFoundError" in broken.error and "visum_dependency_that_is_not_installed" in broken.error


def test_pipeline_runs_with_the_third_party_component(site, parts_folder, tmp_path):
    config = make_config({"images": str(parts_folder), "saliency": "gradient", "proposer": "grid",
                          "options": {"proposer": {"scales": [0.15, 0.25], "step": 0.5}}})
    result = Pipeline(config, tmp_path / "out", catalogue=build_catalogue(), cache=Cache(tmp_path / "c")).run()
    result.save()
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


def _visum(site, *args, **env):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **env)
    return subprocess.run([sys.executable, "-m", "visum.cli", *args], env=env, capture_output=True, text=True)


def test_a_broken_plugin_is_listed_with_its_error_and_named_when_missing(site):
    done = _visum(site, "plugins")
    assert done.returncode == 0, done.stderr
    tail = done.stdout.split("\nnot loaded\n")[1]
    assert "broken" in tail and "BROKEN" in tail and "visum_dependency_that_is_not_installed" in tail
    done = _visum(site, "run", "--proposer", "nope")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "unknown proposer plugin 'nope'" in line and "not loaded: plugin 'broken' (visum-broken-plugin 0.1.0)" in line


def test_load_plugins_variable_restricts_third_parties(site):
    only_grid = _visum(site, "plugins", VISUM_LOAD_PLUGINS="visum-grid-proposer")
    assert "grid" in only_grid.stdout and "BROKEN" not in only_grid.stdout
    assert "broken               left out by VISUM_LOAD_PLUGINS" in only_grid.stdout
    none = _visum(site, "plugins", "--kind", "proposer", VISUM_LOAD_PLUGINS="")
    assert none.returncode == 0 and "visum-grid-proposer" not in none.stdout
