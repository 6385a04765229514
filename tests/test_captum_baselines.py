"""The Captum baseline saliency plugins (visum_plugins.saliency.captum_baselines).

The whole file takes about 12 s on two cores (one torch thread, see ``_one_thread``); most
of it is the five methods with their default options on EfficientNet-Lite0.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, LayerAttribution, LayerGradCam
from pydantic import ValidationError

from visum.components import SaliencyMethod
from visum_plugins.saliency.captum_baselines import (
    GuidedBackpropReLU6,
    GuidedBackpropSaliency,
    IntegratedGradientsOptions,
    IntegratedGradientsSaliency,
    OcclusionOptions,
    OcclusionSaliency,
    SmoothGradOptions,
    SmoothGradSaliency,
    blurred_baseline,
    occlusion_window,
)
from visum_plugins.saliency.gradcam import GradCAMOptions, GradCAMSaliency, find_cam_layer
from visum_plugins.saliency.gradient import normalise_by_quantile



# cheap options for the tiny models; the defaults are exercised on EfficientNet-Lite0
FAST = {
    "integrated-gradients": lambda: IntegratedGradientsSaliency(IntegratedGradientsOptions(n_steps=8)),
    "gradcam": lambda: GradCAMSaliency(),
    "occlusion": lambda: OcclusionSaliency(),
    "guided-backprop": lambda: GuidedBackpropSaliency(),
    "smoothgrad": lambda: SmoothGradSaliency(SmoothGradOptions(nt_samples=6)),
}
ALL = [IntegratedGradientsSaliency, GradCAMSaliency, OcclusionSaliency, GuidedBackpropSaliency, SmoothGradSaliency]


def _tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, stride=2),
        torch.nn.ReLU6(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    )
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


H, W = 48, 64
PATCH = (slice(8, 24), slice(36, 52))  # rows, columns: off-centre, in a non-square image


class _PatchModel(torch.nn.Module):
    """Class 0's logit depends only on the pixels of PATCH (their energy); class 1 is its negative."""

    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, H, W)
        mask[..., PATCH[0], PATCH[1]] = 1.0
        self.register_buffer("mask", mask)
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1, stride=2)
        self.relu2 = torch.nn.ReLU()
        self.fc = torch.nn.Linear(4, 2)
        with torch.no_grad():
            torch.manual_seed(3)
            for conv in (self.conv1, self.conv2):
                conv.weight.uniform_(0.5, 1.5)
                conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0]]))
            self.fc.bias.zero_()
        self.eval()

    def forward(self, x):
        z = (x * self.mask) ** 2
        z = self.relu2(self.conv2(self.relu1(self.conv1(z))))
        return self.fc(z.mean(dim=(2, 3)))


def _mass_inside(s: torch.Tensor, grow: int = 0) -> float:
    """Fraction of the mask's mass inside PATCH grown by ``grow`` pixels on every side."""
    inside = torch.zeros(H, W, dtype=torch.bool)
    r, c = PATCH
    inside[max(0, r.start - grow) : r.stop + grow, max(0, c.start - grow) : c.stop + grow] = True
    return float(s[..., inside].sum() / s.sum())


# --------------------------------------------------------------------------- protocol


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_is_a_saliency_component_with_documented_options(cls):
    assert isinstance(cls(), SaliencyMethod)
    assert cls.summary
    for name, field in cls.Options.model_fields.items():
        assert field.description, f"{cls.name}.{name} has no description"
    with pytest.raises(ValidationError):
        cls.Options(not_an_option=1)


def test_registered_in_the_catalogue():
    registry = Path(__file__).resolve().parents[1] / "registry.toml"
    with open(registry, "rb") as f:
        entries = {e["name"]: e for e in tomllib.load(f)["plugin"]}
    for cls in ALL:
        assert entries[cls.name]["kind"] == "saliency"
        assert entries[cls.name]["module"] == cls.__module__

    from visum.plugins import build_catalogue

    catalogue = build_catalogue(entry_points=[])
    names = {info.name for info in catalogue._components.values() if info.kind == "saliency"}
    assert {cls.name for cls in ALL} <= names


# --------------------------------------------------------------------------- every method on a tiny CNN


@pytest.mark.parametrize("name", list(FAST))
def test_shape_range_determinism_and_batch_independence(name):
    model = _tiny_cnn()
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 40)
    x_before = x.clone()
    target = torch.tensor([1, 2, 1])  # Grad-CAM of classes 0 and 3 is all negative here
    method = FAST[name]()

    s = method.explain(model, x, target)
    assert s.shape == (3, 1, 32, 40) and s.dtype == torch.float32
    assert not s.requires_grad
    assert torch.isfinite(s).all() and float(s.min()) >= 0.0 and float(s.max()) <= 1.0
    peaks = s.amax(dim=(1, 2, 3))  # normalised by a quantile; Grad-CAM may find no positive evidence
    assert all(p == pytest.approx(1.0) or p == 0.0 for p in peaks.tolist()) and float(peaks.max()) == 1.0
    assert torch.equal(x, x_before) and not x.requires_grad

    assert torch.equal(method.explain(model, x, target), s)  # deterministic
    singles = torch.cat([method.explain(model, x[b : b + 1], target[b : b + 1]) for b in range(3)])
    torch.testing.assert_close(s, singles, rtol=1e-4, atol=1e-4)

    assert method.explain(model, x[:0], target[:0]).shape == (0, 1, 32, 40)
    with pytest.raises(ValueError, match="target"):
        method.explain(model, x, target[:2])


@pytest.mark.parametrize("name", list(FAST))
def test_works_under_no_grad(name):
    model = _tiny_cnn()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        s = FAST[name]().explain(model, x, torch.tensor([2]))
    assert float(s.max()) == pytest.approx(1.0)


# --------------------------------------------------------------------------- localisation


@pytest.mark.parametrize(
    "name, inside, grow, inside_grown",
    [
        ("integrated-gradients", 0.999, 0, 0.999),  # the score's gradient is exactly 0 off the patch
        ("guided-backprop", 0.999, 0, 0.999),
        ("smoothgrad", 0.999, 0, 0.999),
        ("gradcam", 0.8, 3, 0.99),  # stride-2 feature map, 3x3 convs, bilinear upsampling
        ("occlusion", 0.7, 5, 0.999),  # a 6 px window spreads a patch's drop over its neighbours
    ],
)
def test_attribution_lies_on_the_patch_the_score_depends_on(name, inside, grow, inside_grown):
    model = _PatchModel()
    torch.manual_seed(5)
    x = torch.randn(2, 3, H, W)
    x[1] += 2.0 * torch.sign(x[1])  # a high-contrast image: still only the patch counts
    s = FAST[name]().explain(model, x, torch.tensor([0, 0]))
    for b in range(2):
        assert _mass_inside(s[b, 0]) >= inside, name
        assert _mass_inside(s[b, 0], grow) >= inside_grown, name
        row, col = np.unravel_index(int(s[b, 0].argmax()), (H, W))
        assert PATCH[0].start <= row < PATCH[0].stop and PATCH[1].start <= col < PATCH[1].stop, name


# --------------------------------------------------------------------------- integrated gradients


def test_integrated_gradients_of_a_linear_model_is_exact():
    torch.manual_seed(2)
    k, h, w = 3, 6, 7
    weight = torch.randn(k, 3, h, w)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * h * w, k)).eval()
    with torch.no_grad():
        model[1].weight.copy_(weight.reshape(k, -1))
    x = torch.randn(2, 3, h, w)
    target = torch.tensor([1, 2])
    for sign in ("positive", "absolute"):
        opts = IntegratedGradientsOptions(n_steps=4, sign=sign, normalise_quantile=1.0)
        s = IntegratedGradientsSaliency(opts).explain(model, x, target)
        for b in range(2):
            a = (x[b] * weight[target[b]]).sum(dim=0)  # (x - 0) * dS/dx, summed over channels
            a = a.clamp(min=0) if sign == "positive" else a.abs()
            torch.testing.assert_close(s[b, 0], a / a.max(), rtol=1e-4, atol=1e-5)


def test_blur_baseline_commutes_with_normalisation():
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, 20, 24)
    mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.3, 0.25]).view(1, 3, 1, 1)
    torch.testing.assert_close(
        blurred_baseline((pixels - mean) / std, 2.0), (blurred_baseline(pixels, 2.0) - mean) / std, rtol=1e-4, atol=1e-5
    )
    assert torch.equal(blurred_baseline(pixels, 0.0), pixels)
    s = IntegratedGradientsSaliency(IntegratedGradientsOptions(n_steps=4, baseline="blur")).explain(
        _tiny_cnn(), (pixels - mean) / std, torch.tensor([0, 1])
    )
    assert s.shape == (2, 1, 20, 24) and float(s.max()) == pytest.approx(1.0)


# --------------------------------------------------------------------------- grad-cam


def test_gradcam_finds_the_last_conv_and_honours_layer():
    model = _PatchModel()
    x = torch.randn(2, 3, H, W)
    target = torch.tensor([0, 1])
    found = find_cam_layer(model, x, target, follow_batchnorm=False)
    assert (found.name, found.module, found.grid) == ("conv2", model.conv2, None)

    def manual(layer):
        cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
        cam = LayerAttribution.interpolate(cam, (H, W), "bilinear")
        return normalise_by_quantile(cam.clamp(min=0).detach(), 0.995)

    torch.testing.assert_close(GradCAMSaliency().explain(model, x, target), manual(model.conv2))
    chosen = GradCAMSaliency(GradCAMOptions(layer="conv1")).explain(model, x, target)
    torch.testing.assert_close(chosen, manual(model.conv1))
    assert not torch.allclose(chosen, manual(model.conv2))


def test_gradcam_layer_is_the_last_conv_that_runs_and_follows_batchnorm():
    class WithAuxHead(torch.nn.Module):  # the aux head is registered last but eval mode skips it
        def __init__(self):
            super().__init__()
            self.trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
            self.aux = torch.nn.Conv2d(4, 2, 1)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            z = self.trunk(x)
            if self.training:
                z = z + self.aux(z).mean()
            return self.fc(z.mean(dim=(2, 3)))

    model = WithAuxHead().eval()
    x = torch.randn(1, 3, 16, 16)
    assert [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)][-1] == "aux"
    one = torch.tensor([0])
    assert find_cam_layer(model, x, one, follow_batchnorm=False).name == "trunk.0"
    assert find_cam_layer(model, x, one, follow_batchnorm=True).name == "trunk.1"
    assert find_cam_layer(_PatchModel(), torch.randn(1, 3, H, W), one, follow_batchnorm=True).name == "conv2"

    # Grad-CAM of a conv differs from Grad-CAM of conv+BN by a constant before the ReLU
    target = torch.tensor([1])
    pre = [
        LayerGradCam(model, layer).attribute(x, target=target).detach()
        for layer in (model.trunk[0], model.trunk[1])
    ]
    offset = pre[0] - pre[1]
    torch.testing.assert_close(offset, torch.full_like(offset, float(offset.mean())), rtol=1e-4, atol=1e-5)

    s_default = GradCAMSaliency().explain(model, x, target)
    s_bare = GradCAMSaliency(GradCAMOptions(follow_batchnorm=False)).explain(model, x, target)
    s_bn = GradCAMSaliency(GradCAMOptions(layer="trunk.1")).explain(model, x, target)
    torch.testing.assert_close(s_default, s_bn)
    s_conv = GradCAMSaliency(GradCAMOptions(layer="trunk.0")).explain(model, x, target)
    torch.testing.assert_close(s_bare, s_conv)


def test_gradcam_reads_activations_before_in_place_ops_as_captum_does():
    """A ReLU(inplace=True) after the explained conv must not change the activations Grad-CAM reads."""

    class InPlace(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
            self.relu = torch.nn.ReLU(inplace=True)
            self.fc = torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))

    model = InPlace().eval()
    x, target = torch.randn(2, 3, 12, 12), torch.tensor([0, 2])
    cam = LayerGradCam(model, model.conv).attribute(x, target=target, relu_attributions=True)
    expected = normalise_by_quantile(LayerAttribution.interpolate(cam, (12, 12), "bilinear").clamp(min=0).detach(), 0.995)
    torch.testing.assert_close(GradCAMSaliency().explain(model, x, target), expected)


def test_gradcam_takes_the_block_when_the_last_conv_is_on_a_residual_branch():
    """A block whose shortcut (conv + BN) runs after the main branch, as in timm's ResNets."""

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 6, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(6)
            self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 1), torch.nn.BatchNorm2d(6))

        def forward(self, x):
            main = self.bn(self.conv(x))
            return (main + self.shortcut(x)).relu()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(8)
            self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.block = Block()
            self.fc = torch.nn.Linear(6, 2)

        def forward(self, x):
            return self.fc(self.block(self.stem(x).relu()).mean(dim=(2, 3)))

    from visum_plugins.saliency.gradcam import is_cut

    model = Net().eval()
    x = torch.randn(1, 3, 12, 12)
    assert not is_cut(model, x, model.block.shortcut[1]) and not is_cut(model, x, model.block.bn)
    assert is_cut(model, x, model.block) and is_cut(model, x, model.stem)
    assert find_cam_layer(model, x, torch.tensor([0])).name == "block"


def test_gradcam_skips_a_layer_that_runs_twice_and_refuses_it_by_name():
    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(6)
            self.first = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.shared = torch.nn.Conv2d(4, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.shared(self.shared(self.first(x)).relu()).mean(dim=(2, 3)))

    model = Twice().eval()
    x = torch.randn(2, 3, 10, 10)
    assert find_cam_layer(model, x, torch.tensor([0, 1])).name == "first"
    assert GradCAMSaliency().explain(model, x, torch.tensor([0, 1])).shape == (2, 1, 10, 10)
    with pytest.raises(ValueError, match="'shared' runs 2 times for a batch of 2"):
        GradCAMSaliency(GradCAMOptions(layer="shared")).explain(model, x, torch.tensor([0, 1]))


def test_gradcam_errors_are_clear():
    no_conv = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"no convolution or transformer token layer.*layer="):
        GradCAMSaliency().explain(no_conv, x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"no module named 'conv3'.*conv2"):
        GradCAMSaliency(GradCAMOptions(layer="conv3")).explain(_PatchModel(), torch.randn(1, 3, H, W), [0])
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        GradCAMSaliency(GradCAMOptions(layer="fc")).explain(_PatchModel(), torch.randn(1, 3, H, W), torch.tensor([0]))


# --------------------------------------------------------------------------- occlusion


def test_occlusion_window_defaults_and_checks():
    assert occlusion_window(224, 224, None, None) == (28, 14)
    assert occlusion_window(48, 64, None, None) == (6, 3)
    assert occlusion_window(10, 10, None, None) == (1, 1)
    assert occlusion_window(224, 300, 50, 10) == (50, 10)
    with pytest.raises(ValueError, match="does not fit"):
        occlusion_window(32, 32, 40, None)
    with pytest.raises(ValueError, match="larger than the window"):
        occlusion_window(32, 32, 8, 9)
    with pytest.raises(ValidationError, match="larger than window"):
        OcclusionOptions(window=4, stride=5)
    # the positive part: a patch whose occlusion RAISES the score is not salient
    model = _PatchModel()
    x = torch.randn(1, 3, H, W)
    s = OcclusionSaliency().explain(model, x, torch.tensor([1]))  # class 1 = minus the patch energy
    assert torch.equal(s, torch.zeros_like(s))


# --------------------------------------------------------------------------- guided backprop


def _relu6_net(act) -> torch.nn.Module:
    torch.manual_seed(4)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), act(), torch.nn.Conv2d(6, 6, 3, padding=1), act(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 3),
    )  # fmt: skip
    return model.eval()


@pytest.mark.filterwarnings("ignore:Setting backward hooks")
def test_guided_backprop_rewrites_relu6_like_relu():
    x = 0.1 * torch.randn(2, 3, 12, 12)  # small: no activation reaches 6, so ReLU6 == ReLU here
    target = torch.tensor([0, 2])
    relu6, relu = _relu6_net(torch.nn.ReLU6), _relu6_net(torch.nn.ReLU)
    with torch.no_grad():
        assert float(relu6[:4](x).max()) < 6.0
    reference = GuidedBackprop(relu).attribute(x.clone().requires_grad_(), target=target)
    ours = GuidedBackpropReLU6(relu6).attribute(x.clone().requires_grad_(), target=target)
    torch.testing.assert_close(ours, reference)
    plain = GuidedBackprop(relu6).attribute(x.clone().requires_grad_(), target=target)  # Captum's limitation
    assert not torch.allclose(plain, reference)
    assert not relu6[1]._forward_hooks and not relu6[1]._forward_pre_hooks  # hooks removed

    class Shared(torch.nn.Module):  # one ReLU6 module called twice, as EfficientNet-Lite's _swish
        def __init__(self, net):
            super().__init__()
            self.net, self.act = net, torch.nn.ReLU6()

        def forward(self, x):
            n = self.net
            return n[6](n[5](n[4](self.act(n[2](self.act(n[0](x)))))))

    shared = Shared(_relu6_net(torch.nn.ReLU6)).eval()
    ours = GuidedBackpropReLU6(shared).attribute(x.clone().requires_grad_(), target=target)
    torch.testing.assert_close(ours, reference)


# --------------------------------------------------------------------------- smoothgrad


def test_smoothgrad_is_seeded_and_leaves_the_global_rng_alone():
    model = _tiny_cnn()
    x = torch.randn(2, 3, 24, 24)
    target = torch.tensor([1, 4])
    opts = SmoothGradOptions(nt_samples=4, seed=7)
    state = torch.get_rng_state()
    a = SmoothGradSaliency(opts).explain(model, x, target)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # the caller's RNG does not matter
    assert torch.equal(SmoothGradSaliency(opts).explain(model, x, target), a)
    other = SmoothGradSaliency(SmoothGradOptions(nt_samples=4, seed=8)).explain(model, x, target)
    assert not torch.equal(other, a)
    sq = SmoothGradSaliency(SmoothGradOptions(nt_samples=4, seed=7, nt_type="smoothgrad_sq")).explain(model, x, target)
    assert sq.shape == a.shape and not torch.equal(sq, a)


# --------------------------------------------------------------------------- EfficientNet-Lite0


@pytest.fixture(scope="module")
def lite0():
    from skimage import data

    from visum.models.loading import load_model

    loaded = load_model("efficientnet-lite0")
    pre = loaded.preprocessing
    x = pre.to_tensor([pre.view(data.chelsea()).pixels])
    with torch.no_grad():
        target = loaded.module(x).argmax(dim=1)
    return loaded.module, x, target


@pytest.mark.filterwarnings("ignore:Setting backward hooks")
def test_efficientnet_lite0_gradcam_layer_and_guided_relu6(lite0):
    model, x, target = lite0
    assert find_cam_layer(model, x, target, follow_batchnorm=False).name == "_conv_head"
    assert find_cam_layer(model, x, target, follow_batchnorm=True).name == "_bn1"
    assert any(isinstance(m, torch.nn.ReLU6) for m in model.modules())
    assert not any(type(m) is torch.nn.ReLU for m in model.modules())
    guided = GuidedBackpropReLU6(model).attribute(x.clone().requires_grad_(), target=target)
    plain = GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=target)  # = the gradient
    assert not torch.allclose(guided, plain)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_defaults_on_efficientnet_lite0(lite0, cls):
    """Default options on one 224x224 photo: 2-4 s for integrated gradients and occlusion."""
    model, x, target = lite0
    s = cls().explain(model, x, target)
    assert s.shape == (1, 1, 224, 224) and s.dtype == torch.float32
    assert float(s.min()) >= 0.0 and float(s.max()) == pytest.approx(1.0)
    assert 0.0 < float(s.mean()) < 0.9  # not a flat map
