"""The Python API: a model object and pictures in memory give what `visum run` gives on files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visum
from conftest import run_cli
from visum.data.parts import CLASS_NAMES, make_dataset
from visum.errors import ConfigError, InputError
from visum.models.parts_cnn import load_parts_model

FLAGS = {"saliency": "gradient", "matcher": "proposal-flow", "clusterer": "ap"}


@pytest.fixture(scope="module")
def parts():
    loaded = load_parts_model(None)
    return loaded, [s.image for s in make_dataset(10, seed=77, labels=[0])]


def _findings(manifest: dict) -> tuple:
    images = [(im["target_score"], im["predicted_index"], im["used"], im["regions"]) for im in manifest["images"]]
    return images, [(s["kept"], s["quality"], s["reliance"], s["members"]) for s in manifest["summaries"]]


def test_summarize_a_module_on_arrays_is_visum_run_on_their_files(parts, tmp_path, capsys):
    loaded, arrays = parts
    result = visum.summarize(loaded.module, arrays, target="parrot", preprocessing=loaded.preprocessing,
                             class_names=list(CLASS_NAMES), out_dir=tmp_path / "api", progress=False, **FLAGS)
    assert not (tmp_path / "api" / "manifest.json").exists()  # nothing is written until save()
    assert result.kept and all(s.kept for s in result.kept)
    assert result.manifest.model.spec == "module:visum.models.parts_cnn.PartsCNN"
    report = result.save()
    assert report == tmp_path / "api" / "report.html" and report.is_file()

    folder = tmp_path / "files"
    folder.mkdir()
    for k, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"{k:04d}.png")
    code, _, err = run_cli(capsys, "run", "--images", folder, "--model", "parts", "--target", "parrot", "-q",
                           *[f"--{k}={v}" for k, v in FLAGS.items()], "--out", tmp_path / "cli")
    assert code == 0, err
    cli = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    api = json.loads((tmp_path / "api" / "manifest.json").read_text())
    assert _findings(api) == _findings(cli)
    names = lambda d: sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if "images" not in p.parts)  # noqa: E731
    assert names(tmp_path / "api") == names(tmp_path / "cli")


def test_explain_gives_the_mask_of_one_image(parts, tmp_path):
    loaded, arrays = parts
    mask = visum.explain(loaded.module, arrays[3], target=0, method="gradient", preprocessing=loaded.preprocessing)
    assert mask.shape == arrays[3].shape[:2] and mask.dtype == np.float32
    assert 0 <= mask.min() and mask.max() <= 1 and mask.max() > 0.5
    whole = visum.summarize(loaded.module, arrays, target=0, preprocessing=loaded.preprocessing, progress=False,
                            out_dir=tmp_path, **FLAGS)
    np.testing.assert_array_equal(mask, whole.masks[3])


def test_result_shows_itself_in_a_notebook(parts):
    loaded, arrays = parts
    result = visum.summarize(loaded.module, arrays[:6], target=0, preprocessing=loaded.preprocessing,
                             progress=False, **FLAGS)
    page = result._repr_html_()
    assert f"{len(result.kept)} summaries kept of {len(result.summaries)} clusters" in page
    assert page.count("<img src='data:image/jpeg;base64,") == min(len(result.kept), 12) > 0


def test_a_result_in_a_temporary_folder_saves_elsewhere_whole_and_the_module_is_put_back(parts, tmp_path):
    loaded, arrays = parts
    net = loaded.module
    net.train()
    for p in net.parameters():
        p.requires_grad_(True)
    result = visum.summarize(net, arrays[:6], target=0, preprocessing=loaded.preprocessing, progress=False, **FLAGS)
    assert net.training and all(p.requires_grad for p in net.parameters())  # as the caller left it
    with pytest.raises(ConfigError, match="temporary folder"):
        result.save()
    out = tmp_path / "kept"
    result.save(out)
    saved = json.loads((out / "manifest.json").read_text())
    assert [im["path"] for im in saved["images"]] == [f"images/{k:04d}.png" for k in range(6)]
    assert all((out / im["path"]).is_file() for im in saved["images"])  # the folder stands on its own
    # the images moved with the run: named relative to its folder, which run.toml is read against
    assert saved["config"]["images"] == "images" and 'images = "images"' in (out / "run.toml").read_text()
    from visum.config import load_config

    assert load_config(out / "run.toml").images == out / "images"
    temporary = result.workdir.name
    del result
    import gc

    gc.collect()
    assert not Path(temporary).exists()


def test_bad_inputs_are_one_clear_error(parts):
    loaded, arrays = parts
    with pytest.raises(InputError, match=r"images\[1\]: an array of shape \(4, 4\) and dtype float64"):
        visum.summarize(loaded.module, [arrays[0], np.zeros((4, 4))], target=0, progress=False)
    with pytest.raises(ConfigError, match="expected a torch.nn.Module, got dict"):
        visum.explain({}, arrays[0], target=0)
    with pytest.raises(ConfigError, match="unknown key"):
        visum.explain(loaded.module, arrays[0], target=0, preprocessing={"size": 3})
    with pytest.raises(visum.PluginError, match="unknown saliency plugin 'nope'"):
        visum.explain(loaded.module, arrays[0], target=0, method="nope")
    with pytest.raises(InputError, match="explain takes one image"):
        visum.explain(loaded.module, arrays[:2], target=0)
    with pytest.raises(InputError, match="images: a int"):
        visum.summarize(loaded.module, 5, target=0)
    with pytest.raises(ConfigError, match="options"):
        visum.summarize(loaded.module, arrays, target=0, options={"saliency": 5})


def test_the_core_imports_no_presentation_or_evaluation():
    code = ("import sys, visum.pipeline, visum.result, visum.api; "
            "print([m for m in sys.modules if m.startswith(('visum.report', 'visum.evaluate', 'visum.output', "
            "'visum.cli'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
