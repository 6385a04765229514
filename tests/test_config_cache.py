import pytest

from visum.cache import Cache, content_hash, make_key
from visum.config import dump_config, load_config, make_config, parse_opt
from visum.errors import ConfigError


def test_parse_opt_values_and_errors():
    assert parse_opt("saliency.smooth_sigma=2") == ("saliency", "smooth_sigma", 2)
    assert parse_opt("clusterer.preference=0.25") == ("clusterer", "preference", 0.25)
    assert parse_opt("proposer.mode=quality") == ("proposer", "mode", "quality")
    assert parse_opt("matcher.cells=[2, 4]") == ("matcher", "cells", [2, 4])
    for bad in ["saliency", "saliency=3", "nokind.key=1", ".x=1"]:
        with pytest.raises(ConfigError, match="--opt"):
            parse_opt(bad)


def test_config_toml_round_trip(tmp_path):
    cfg = make_config({"saliency": "gradient", "seed": 7, "options": {"clusterer": {"preference": 0.3}},
                       "model": {"spec": "efficientnet-lite0", "mean": (0.5, 0.5, 0.5), "crop_ratio": 1.0,
                                 "resize": "squash", "interpolation": "bilinear", "classes": "names.txt"},
                       "min_target_share": 0.3})
    dump_config(cfg, tmp_path / "run.toml")
    again = load_config(tmp_path / "run.toml")
    assert again == cfg


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="options"):
        make_config({"options": {"nonsense": {}}})
    (tmp_path / "bad.toml").write_text("seed = [")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "x.toml").write_text("sede = 3")
    with pytest.raises(ConfigError, match="sede"):
        load_config(tmp_path / "x.toml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "crop.toml").write_text("[model]\ncrop_ratio = 1.5\nresize = 'stretch'\n")
    with pytest.raises(ConfigError, match=r"crop.toml: model.crop_ratio.*model.resize"):
        load_config(tmp_path / "crop.toml")


def test_cache_round_trip_atomicity_and_corruption(tmp_path):
    import numpy as np

    said = []
    cache = Cache(tmp_path, warn=said.append)
    key = make_key("saliency", image=content_hash(np.zeros(3)), options={"a": 1})
    assert key != make_key("saliency", image=content_hash(np.zeros(3)), options={"a": 2})
    assert cache.get("saliency", key) is None
    cache.put("saliency", key, np.arange(4))
    assert cache.get("saliency", key).tolist() == [0, 1, 2, 3]
    assert not list(tmp_path.rglob("*.tmp"))
    path = next(tmp_path.rglob("*.vcache"))
    path.write_bytes(b"garbage")
    assert cache.get("saliency", key) is None and not path.exists()
    assert len(said) == 1 and str(path) in said[0] and "damaged" in said[0]
    off = Cache(tmp_path / "off", enabled=False)
    off.put("s", key, 1)
    assert off.get("s", key) is None and not (tmp_path / "off").exists()


def test_content_hash_depends_on_shape_dtype_and_bytes():
    import numpy as np

    a = np.zeros((2, 3), np.uint8)
    assert content_hash(a) != content_hash(a.reshape(3, 2))
    assert content_hash(a) != content_hash(a.astype(np.int16))
    assert content_hash(a) == content_hash(a.copy())
