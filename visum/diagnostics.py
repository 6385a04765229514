"""What a run can tell about its own trustworthiness, said out loud.

The first check of every run: how many images does the model classify as the target?
The paper explains a class with the images the network gets right; when most images go
to other classes, the likeliest cause is that the model is fed something it was not
trained on (the wrong crop, size or normalisation), and summaries of the few that remain
explain little. :func:`target_share` measures it; its message names the classes the
images went to and the preprocessing, the first thing to check.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from visum.models.base import Preprocessing

PREPROCESSING_FLAGS = "--resize, --crop-ratio, --input-size, --interpolation, --mean, --std"


def class_label(index: int, names: list[str] | None) -> str:
    """``'tabby' (281)``, or ``class 281`` when the model has no names."""
    return f"'{names[index]}' ({index})" if names else f"class {index}"


@dataclass(frozen=True)
class TargetShare:
    """How the model classified the images of a run.

    ``others`` lists ``(class index, image count)`` of the images classified as another
    class, most frequent first (ties by index).
    """

    target: int
    total: int
    classified: int
    others: tuple[tuple[int, int], ...]

    @property
    def share(self) -> float:
        return self.classified / self.total if self.total else 0.0

    def summary(self, names: list[str] | None, spec: str) -> str:
        """``only 2 of 24 images (8 %) are classified as 'tiger cat' (282) by efficientnet-lite0;
        the others went to 'Egyptian cat' (285) x 22``."""
        head = (f"{self.classified} of {self.total} images ({100 * self.share:.0f} %) are classified as "
                f"{class_label(self.target, names)} by {spec}")
        if self.classified < self.total:
            head = "only " + head
        if not self.others:
            return head
        shown = ", ".join(f"{class_label(k, names)} x {n}" for k, n in self.others[:5])
        rest = sum(n for _, n in self.others[5:])
        more = f" and {rest} to {len(self.others) - 5} other classes" if rest else ""
        return f"{head}; the others went to {shown}{more}"

    def advice(self, pre: Preprocessing) -> str:
        """The preprocessing the model saw, named as the first thing to check."""
        source = f" [{pre.provenance()}]" if pre.provenance() else ""
        return (f"first check the preprocessing: the model saw {pre.describe()}{source}; "
                f"change it with {PREPROCESSING_FLAGS}")


def target_share(predicted: np.ndarray, target: int) -> TargetShare:
    """``predicted`` ``[N]`` class indices → the share classified as ``target`` and where the rest went."""
    predicted = np.asarray(predicted).reshape(-1)
    counts = Counter(int(k) for k in predicted if int(k) != target)
    others = tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return TargetShare(target=int(target), total=int(predicted.size), classified=int((predicted == target).sum()),
                       others=others)
