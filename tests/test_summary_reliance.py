"""Reliance of a summary by intervention: blurring a part the model uses drops its score, blurring elsewhere does not."""

import numpy as np
import pytest
import torch

from visum.summary_reliance import blur_boxes, box_masks, member_drops, ratio_of_sums


class PatchDetector(torch.nn.Module):
    """Class 1's logit is the local contrast of a fixed 8x8 patch (its pixels' spread); class 0's is fixed."""

    def forward(self, x):
        patch = x[:, :, 8:16, 8:16]
        contrast = (patch - patch.mean(dim=(2, 3), keepdim=True)).abs().mean(dim=(1, 2, 3))
        return torch.stack([torch.full_like(contrast, 1.0), 20 * contrast], 1)


def test_box_masks_and_blur_touch_only_the_box():
    m = box_masks(np.array([[2, 3, 6, 5], [-4, -4, 2, 100]]), 8, 10)
    assert m.shape == (2, 1, 8, 10)
    assert m[0, 0].sum() == 4 * 2 and m[0, 0, 3:5, 2:6].all()
    assert m[1, 0].sum() == 2 * 8  # clipped to the image
    x = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    y = blur_boxes(x, np.array([[2, 3, 6, 5], [0, 0, 1, 1]]))
    outside = (1 - box_masks(np.array([[2, 3, 6, 5], [0, 0, 1, 1]]), 8, 10)).bool().expand_as(x)
    assert torch.equal(y[outside], x[outside]) and not torch.equal(y, x)


def test_blurring_the_used_patch_drops_the_score_and_elsewhere_does_not():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    on = np.array([[8, 8, 16, 16]] * 4)
    off = np.array([[20, 20, 30, 30]] * 4)
    p, q_on = member_drops(PatchDetector(), x, on, [1] * 4, batch_size=3)
    p2, q_off = member_drops(PatchDetector(), x, off, [1] * 4)
    assert np.allclose(p, p2)
    assert ratio_of_sums(p, q_on) > 0.5
    assert ratio_of_sums(p, q_off) == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(ratio_of_sums(np.zeros(0), np.zeros(0)))
