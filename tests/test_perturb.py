"""Tests of visum.perturb: the blur perturbation Phi(x; s) of the paper's Sec. 3.1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage import data

from visum.filters import gaussian_blur
from visum.perturb import (
    SIGMA0,
    blur_sigmas,
    blur_stack,
    exact_perturb,
    perturb,
)



def _photo(size: int = 64, batch: int = 2) -> torch.Tensor:
    """Crops of a real photo (natural image statistics), normalised as a model would see them."""
    img = data.chelsea().astype(np.float32) / 255.0  # [300, 451, 3]
    crops = [img[60 + 40 * i : 60 + 40 * i + size, 150 + 50 * i : 150 + 50 * i + size] for i in range(batch)]
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    return (x - 0.5) / 0.5


def _smooth_masks(batch: int, size: int, cells: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 1, cells, cells, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def test_zero_mask_is_the_identity():
    x = _photo()
    out = perturb(blur_stack(x), torch.zeros(2, 1, 64, 64))
    assert torch.equal(out, x)


def test_full_mask_is_a_sigma0_gaussian_blur():
    x = _photo()
    out = perturb(blur_stack(x), torch.ones(2, 1, 64, 64))
    # an independent implementation: scipy, replicated borders ("nearest"), same truncation
    ref = gaussian_filter(x.numpy(), sigma=(0, 0, SIGMA0, SIGMA0), mode="nearest", truncate=4.0)
    assert np.abs(out.numpy() - ref).max() < 1e-4


def test_constant_masks_at_the_knots_are_exact_blurs():
    x = _photo()
    stack = blur_stack(x, levels=4)
    for sigma in blur_sigmas(SIGMA0, 4):
        s = torch.full((2, 1, 64, 64), float(sigma) / SIGMA0)
        assert torch.allclose(perturb(stack, s), gaussian_blur(x, float(sigma)), atol=1e-5)


def test_perturbation_grows_monotonically_with_s():
    x = _photo()
    stack = blur_stack(x)
    dist = [
        (perturb(stack, torch.full((2, 1, 64, 64), v)) - x).abs().mean().item() for v in np.linspace(0, 1, 21)
    ]
    assert all(b >= a - 1e-7 for a, b in zip(dist, dist[1:]))
    assert dist[-1] > 0.05


def test_gradient_with_respect_to_s_is_finite_and_nonzero_from_zero():
    x = _photo()
    stack = blur_stack(x)
    for value in (0.0, 0.37, 1.0):
        s = torch.full((2, 1, 64, 64), value, requires_grad=True)
        loss = (perturb(stack, s) - 0.3).pow(2).sum()
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(grad).all()
        if value < 1.0:  # at s = 0 the mask must still be able to grow
            assert grad.abs().sum() > 0


def test_commutes_with_per_channel_normalisation():
    x = (_photo() + 1) / 2  # back to [0, 1]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    s = _smooth_masks(2, 64, 8)
    a = perturb(blur_stack((x - mean) / std), s)
    b = (perturb(blur_stack(x), s) - mean) / std
    assert torch.allclose(a, b, atol=1e-4)


def test_batch_equals_single_images():
    x = _photo(batch=3)
    s = _smooth_masks(3, 64, 8)
    whole = perturb(blur_stack(x), s)
    for i in range(3):
        assert torch.allclose(whole[i : i + 1], perturb(blur_stack(x[i : i + 1]), s[i : i + 1]), atol=1e-6)


def test_exact_operator_with_constant_mask_is_a_blur():
    x = _photo(size=24, batch=1)
    s = torch.full((1, 1, 24, 24), 0.43)
    assert torch.allclose(exact_perturb(x, s), gaussian_blur(x, 4.3), atol=1e-5)


@pytest.mark.parametrize("levels, mean_bound, max_bound", [(8, 0.003, 0.15), (16, 0.001, 0.1)])
def test_interpolation_is_close_to_the_exact_operator(levels, mean_bound, max_bound):
    """Bounds of the docstring of visum.perturb, on crops of a photo (normalised std 0.5)."""
    x = _photo(size=48)
    s = torch.cat([_smooth_masks(2, 48, 6, seed=1), _smooth_masks(2, 48, 12, seed=2)])
    x = torch.cat([x, x])
    err = (perturb(blur_stack(x, levels=levels), s) - exact_perturb(x, s)).abs()
    assert err.mean().item() < mean_bound
    assert err.max().item() < max_bound


def test_rejects_a_mask_of_the_wrong_shape():
    with pytest.raises(ValueError):
        perturb(blur_stack(torch.zeros(1, 3, 8, 8)), torch.zeros(1, 1, 4, 4))
