"""Every built-in saliency method on vision transformers (random weights), and Grad-CAM's layer
choice on ViTs, torch.export programs and TorchScript (issue 13, part 3)."""

from __future__ import annotations

import pytest
import torch

from visum.plugins import get_catalogue

# cheap settings: the methods' maths, not their quality, is under test here
CHEAP = {
    "iebb": {"iterations": 3},
    "crisp": {"rough_iterations": 2, "crisp_iterations": 2},
    "integrated-gradients": {"n_steps": 3, "internal_batch_size": 3},
    "occlusion": {"window": 56, "stride": 56},
    "smoothgrad": {"nt_samples": 2, "nt_samples_batch_size": 2},
}
METHODS = sorted(c.name for c in get_catalogue().list("saliency"))


def _frozen(module: torch.nn.Module) -> torch.nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


@pytest.fixture(scope="module")
def vits():
    timm = pytest.importorskip("timm")
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.vit_b_16()
    torch.nn.init.normal_(tv.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    return {"timm:vit_tiny_patch16_224": _frozen(timm.create_model("vit_tiny_patch16_224")),
            "torchvision:vit_b_16": _frozen(tv)}


@pytest.fixture(scope="module")
def image():
    from skimage import data

    from visum.models.base import Preprocessing

    pre = Preprocessing(224, 224, (0.5,) * 3, (0.5,) * 3, "squash")
    return pre.to_tensor([pre.view(data.chelsea()).pixels])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_name", ["timm:vit_tiny_patch16_224", "torchvision:vit_b_16"])
def test_every_saliency_method_works_on_a_vit(vits, image, model_name, method):
    catalogue = get_catalogue()
    info = catalogue.get("saliency", method)
    component = catalogue.instantiate(info, catalogue.options("saliency", method, CHEAP.get(method, {})))
    model = vits[model_name]
    with torch.no_grad():
        target = model(image).argmax(1)  # the class the model sees: evidence for it exists
    s = component.explain(model, image, target)
    assert s.shape == (1, 1, 224, 224) and s.dtype == torch.float32
    assert torch.isfinite(s).all() and float(s.min()) >= 0 and float(s.max()) <= 1
    assert float(s.std()) > 0, "a constant map explains nothing"


def test_gradcam_explains_the_token_grid_of_the_last_attention(vits, image):
    from visum_plugins.saliency.gradcam import find_cam_layer

    target = torch.tensor([281])
    timm_layer = find_cam_layer(vits["timm:vit_tiny_patch16_224"], image, target)
    assert (timm_layer.name, timm_layer.grid) == ("blocks.11.norm1", (1, 14, 14))
    tv_layer = find_cam_layer(vits["torchvision:vit_b_16"], image, target)
    assert (tv_layer.name, tv_layer.grid) == ("encoder.layers.encoder_layer_11.ln_1", (1, 14, 14))


def test_gradcam_on_a_mean_pooled_vit_with_registers_takes_the_last_block():
    timm = pytest.importorskip("timm")
    from visum_plugins.saliency.gradcam import find_cam_layer

    torch.manual_seed(0)
    model = _frozen(timm.create_model("vit_tiny_patch16_224", global_pool="avg", class_token=False, reg_tokens=4,
                                      depth=2))
    layer = find_cam_layer(model, torch.randn(1, 3, 224, 224), torch.tensor([3]))
    assert (layer.name, layer.grid) == ("blocks.1", (4, 14, 14))


def test_gradcam_on_an_attention_pooled_vit_reads_the_patch_grid_not_the_pooled_token():
    timm = pytest.importorskip("timm")
    from visum_plugins.saliency.gradcam import GradCAMSaliency, find_cam_layer

    torch.manual_seed(0)
    model = _frozen(timm.create_model("vit_tiny_patch16_224", global_pool="map", class_token=False, depth=2))
    x = torch.randn(1, 3, 224, 224)
    layer = find_cam_layer(model, x, torch.tensor([3]))
    assert layer.grid == (0, 14, 14) and not layer.name.startswith("attn_pool")
    assert float(GradCAMSaliency().explain(model, x, torch.tensor([3])).std()) > 0


def test_token_grid_and_reshape():
    from visum_plugins.saliency.gradcam import token_grid, tokens_to_grid

    assert token_grid(197, 224, 224) == (1, 14, 14)
    assert token_grid(198, 224, 224) == (2, 14, 14)  # class + distillation
    assert token_grid(196, 224, 224) == (0, 14, 14)
    assert token_grid(1 + 12 * 16, 192, 256) == (1, 12, 16)  # non-square: the grid follows the aspect
    assert token_grid(50, 224, 224) == (1, 7, 7)
    assert token_grid(1, 224, 224) is None and token_grid(3, 224, 224) is None  # a pooled token is no grid
    assert token_grid(197, 224, 224, grid=(14, 14)) == (1, 14, 14)  # the patch embedding's grid
    assert token_grid(1, 224, 224, grid=(14, 14)) is None
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # 1 prefix + 2x2 grid, D = 3
    grid = tokens_to_grid(tokens, 1, 2, 2)
    assert grid.shape == (2, 3, 2, 2)
    assert torch.equal(grid[0, :, 0, 1], tokens[0, 2])  # token 1 + (0 * 2 + 1) -> row 0, column 1


def test_gradcam_on_an_exported_program_equals_the_eager_model(tmp_path):
    from byom import BorderNet, save_exported

    from visum.models.loading import load_model
    from visum_plugins.saliency.gradcam import GradCAMSaliency

    torch.manual_seed(3)
    eager = _frozen(BorderNet())
    loaded = load_model(str(save_exported(eager, tmp_path / "b.pt2")))
    x, target = torch.randn(3, 3, 96, 96), torch.tensor([0, 1, 0])
    torch.testing.assert_close(GradCAMSaliency().explain(loaded.module, x, target),
                               GradCAMSaliency().explain(eager, x, target))


def test_gradcam_on_a_program_exported_for_batch_one_keeps_the_layer_names(tmp_path):
    from byom import BorderNet

    from visum.models.loading import load_model
    from visum_plugins.saliency.gradcam import GradCAMOptions, GradCAMSaliency, find_cam_layer

    torch.manual_seed(4)
    eager = _frozen(BorderNet())
    path = tmp_path / "one.pt2"
    torch.export.save(torch.export.export(eager, (torch.zeros(1, 3, 96, 96),)), str(path))
    loaded = load_model(str(path))
    assert loaded.extras["one_at_a_time"]
    x, target = torch.randn(3, 3, 96, 96), torch.tensor([1, 0, 1])
    assert find_cam_layer(loaded.module, x, target).name == find_cam_layer(eager, x, target).name == "features.6"
    for options in (GradCAMOptions(), GradCAMOptions(layer="features.3")):
        torch.testing.assert_close(GradCAMSaliency(options).explain(loaded.module, x, target),
                                   GradCAMSaliency(options).explain(eager, x, target), atol=1e-5, rtol=1e-4)


def test_guided_backprop_guides_the_relus_of_an_exported_program(tmp_path):
    from byom import BorderNet, save_exported

    from visum.models.loading import load_model
    from visum_plugins.saliency.captum_baselines import GuidedBackpropSaliency, runs_only_relu
    from visum_plugins.saliency.gradient import Gradient

    torch.manual_seed(5)
    eager = _frozen(BorderNet())
    loaded = load_model(str(save_exported(eager, tmp_path / "b.pt2")))
    assert sum(runs_only_relu(m) for m in loaded.module.modules()) == 3  # BorderNet's three nn.ReLU
    x, target = torch.randn(2, 3, 96, 96), torch.tensor([0, 1])
    guided = GuidedBackpropSaliency().explain(loaded.module, x, target)
    torch.testing.assert_close(guided, GuidedBackpropSaliency().explain(eager, x, target), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(guided, Gradient().explain(eager, x, target))  # guided, not the plain gradient


def test_gradcam_refuses_torchscript_with_a_clear_message(tmp_path):
    from byom import BorderNet, save_torchscript

    from visum.models.loading import load_model
    from visum_plugins.saliency.gradcam import GradCAMSaliency

    loaded = load_model(str(save_torchscript(_frozen(BorderNet()), tmp_path / "b.pt")), input_size=96)
    with pytest.raises(ValueError, match=r"TorchScript.*torch\.export"):
        GradCAMSaliency().explain(loaded.module, torch.randn(1, 3, 96, 96), torch.tensor([0]))
