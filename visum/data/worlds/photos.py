"""Real photographs that ship inside installed packages, used as world backgrounds.

Dev and test worlds draw their photo backgrounds from disjoint pools, so a choice made on
dev worlds never saw the test worlds' photographs. Every photo is read from the package
that ships it; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from visum.errors import InputError

#: name -> (package, path inside the package)
PHOTOS: dict[str, tuple[str, str]] = {
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "astronaut": ("skimage", "data/astronaut.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}
DEV_PHOTOS = ("coffee", "rocket", "astronaut", "china")
TEST_PHOTOS = ("motorcycle", "chelsea", "flower", "grace_hopper")


def photo_path(name: str) -> Path:
    if name not in PHOTOS:
        raise InputError(f"unknown photo {name!r}; photos: {', '.join(PHOTOS)}")
    package, inner = PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise InputError(f"photo {name!r} ships in the {package} package, which is not installed")
    path = Path(spec.origin).parent / inner
    if not path.is_file():
        raise InputError(f"photo {name!r}: {path} is missing from the installed {package}")
    return path


def load_photo(name: str) -> np.ndarray:
    """The photo as ``[H, W, 3]`` uint8 RGB."""
    with Image.open(photo_path(name)) as img:
        return np.asarray(img.convert("RGB"))
