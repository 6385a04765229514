"""The one Gaussian blur: against scipy's, on both borders, and what the callers rely on."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from visum.filters import gaussian_blur, gaussian_kernel1d, gaussian_radius


@pytest.mark.parametrize("border, mode", [("replicate", "nearest"), ("reflect", "mirror")])
def test_matches_scipy(border, mode):
    x = torch.randn(2, 3, 30, 41, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # sigma 2, truncate 4: both cut the kernel at 8 pixels (scipy rounds, visum takes the ceiling)
    ours = gaussian_blur(x, 2.0, truncate=4.0, border=border).numpy()
    theirs = gaussian_filter(x.numpy(), sigma=(0, 0, 2.0, 2.0), truncate=4.0, mode=mode)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


@pytest.mark.parametrize("border", ["replicate", "reflect"])
def test_constants_stay_and_noise_smooths(border):
    x = torch.full((1, 3, 20, 20), 0.3)
    torch.testing.assert_close(gaussian_blur(x, 1.5, border=border), x)
    noise = torch.randn(1, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    assert gaussian_blur(noise, 1.0, border=border).std() < 0.6 * noise.std()
    assert gaussian_blur(noise, 0.0, border=border) is noise


def test_reflect_cuts_the_kernel_at_the_image_side():
    x = torch.randn(1, 1, 5, 40, generator=torch.Generator().manual_seed(2))
    y = gaussian_blur(x, 10.0, truncate=3.0, border="reflect")  # radius 30 > 4 rows: cut to 4
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert gaussian_blur(torch.ones(1, 1, 1, 9), 3.0, border="reflect").eq(1).all()  # one row: nothing to mirror


def test_kernel():
    k = gaussian_kernel1d(1.5, 4.0, dtype=torch.float64)
    assert k.numel() == 2 * gaussian_radius(1.5, 4.0) + 1 == 13
    assert float(k.sum()) == pytest.approx(1.0)
    assert torch.equal(k, k.flip(0)) and int(k.argmax()) == 6
    assert gaussian_kernel1d(0.0).tolist() == [1.0]
    with pytest.raises(ValueError):
        gaussian_blur(torch.ones(1, 1, 4, 4), 1.0, border="wrap")
