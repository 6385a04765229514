"""Reliance of a summary by intervention: blurring a part the model uses drops its score, blurring elsewhere does not."""

import numpy as np
import pytest
import torch

from visum.stages.reliance import REMOVALS, blur_boxes, box_masks, fill_boxes, member_drops, ratio_of_sums, remove_boxes


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


def test_fill_paints_the_box_with_the_mean_of_the_ring_around_it():
    x = torch.zeros(2, 3, 12, 12)
    x[:, 0] = 1.0  # red everywhere ...
    x[:, :, 4:8, 4:8] = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)  # ... but a blue square
    x[1, :, :, 9:] = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1)  # image 1: a green band at the right
    boxes = np.array([[4, 4, 8, 8], [4, 4, 8, 8]])
    y = fill_boxes(x, boxes, ring=1)
    assert torch.allclose(y[0, :, 4:8, 4:8], torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1))  # the square is gone
    assert torch.allclose(y[1, :, 4:8, 4:8], torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1))  # the band is 1 px off
    wide = fill_boxes(x, boxes, ring=2)  # a 2 px ring reaches column 9, where the band starts
    assert wide[1, 1, 5, 5] > 0 and torch.allclose(wide[0], y[0])
    outside = (1 - box_masks(boxes, 12, 12)).bool().expand_as(x)
    assert torch.equal(y[outside], x[outside])
    whole = fill_boxes(x[:1], np.array([[0, 0, 12, 12]]))  # no ring left: the image's mean
    assert torch.allclose(whole[0, :, 0, 0], x[0].mean(dim=(1, 2)))
    assert REMOVALS == ("blur", "fill")
    with pytest.raises(ValueError, match="unknown removal"):
        remove_boxes(x, boxes, "erase")


@pytest.mark.parametrize("removal", REMOVALS)
def test_removing_the_used_patch_drops_the_score_and_elsewhere_does_not(removal):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    on = np.array([[8, 8, 16, 16]] * 4)
    off = np.array([[20, 20, 30, 30]] * 4)
    p, q_on = member_drops(PatchDetector(), x, np.arange(4), on, 1, batch_size=3, removal=removal)
    p2, q_off = member_drops(PatchDetector(), x, np.arange(4), off, 1, removal=removal)
    assert np.allclose(p, p2)
    assert ratio_of_sums(p, q_on) > 0.5
    assert ratio_of_sums(p, q_off) == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(ratio_of_sums(np.zeros(0), np.zeros(0)))
