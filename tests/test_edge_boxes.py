"""Tests of the ``edge-boxes`` proposer (OpenCV EdgeBoxes on gradient or structured edges)."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from visum.components import Proposer
from visum_plugins.proposers.edge_boxes import (
    EdgeBoxes,
    EdgeBoxesOptions,
    edges_nms,
    gradient_edges,
    load_structured_edge_model,
    opencv_edge_boxes,
)

REGISTRY = Path(__file__).resolve().parents[1] / "registry.toml"

# three high-contrast rectangles on a dark background, [x0, y0, x1, y1] exclusive
RECTS = np.array([[12, 14, 62, 70], [84, 20, 146, 66], [40, 92, 120, 148]], dtype=np.int64)
COLOURS = [(230, 40, 40), (40, 220, 60), (240, 240, 60)]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def rectangles_image(size: int = 160, noise: float = 6.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 35.0) + rng.normal(0.0, noise, (size, size, 3))
    for (x0, y0, x1, y1), colour in zip(RECTS, COLOURS):
        img[y0:y1, x0:x1] = np.asarray(colour, dtype=np.float64) + rng.normal(0.0, noise, (y1 - y0, x1 - x0, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)


def assert_valid_boxes(boxes: np.ndarray, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    assert isinstance(boxes, np.ndarray)
    assert boxes.dtype == np.int64
    assert boxes.ndim == 2 and boxes.shape[1] == 4
    x0, y0, x1, y1 = boxes.T
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x1 <= w).all() and (y1 <= h).all()
    assert (x0 < x1).all() and (y0 < y1).all()  # exclusive ends: never empty
    assert len(np.unique(boxes, axis=0)) == len(boxes)


def write_toy_forest(path: Path) -> Path:
    """A one-tree structured-edge forest in OpenCV's YAML format, just enough for OpenCV to
    run detectEdges/computeOrientation/edgesNms for real (the trained model is not shipped)."""
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.startWriteStruct("options", cv2.FileNode_MAP)
    for key, value in dict(
        stride=2, shrinkNumber=2, patchSize=32, patchInnerSize=16, numberOfGradientOrientations=4,
        gradientSmoothingRadius=0, regFeatureSmoothingRadius=2, ssFeatureSmoothingRadius=8,
        gradientNormalizationRadius=4, selfsimilarityGridSize=5, numberOfTrees=1, numberOfTreesToEvaluate=1,
    ).items():
        fs.write(key, value)
    fs.endWriteStruct()

    def seq(name, values):
        fs.startWriteStruct(name, cv2.FileNode_SEQ)
        fs.startWriteStruct("", cv2.FileNode_SEQ | cv2.FileNode_FLOW)
        for v in values:
            fs.write("", v)
        fs.endWriteStruct()
        fs.endWriteStruct()

    # root splits on feature 0; leaf 2 draws a small cross at the patch centre
    seq("childs", [2, 0, 0])
    seq("featureIds", [0, 0, 0])
    seq("thresholds", [0.05, 0.0, 0.0])
    seq("edgeBoundaries", [0, 0, 0, 5])
    seq("edgeBins", [7 * 16 + 7, 7 * 16 + 8, 8 * 16 + 7, 6 * 16 + 7, 7 * 16 + 6])
    fs.release()
    return path


# --------------------------------------------------------------------------- edge maps


def test_gradient_edges_ranges_and_borders():
    img = rectangles_image(noise=0.0)
    edges, orientation = gradient_edges(img)
    assert edges.dtype == np.float32 and orientation.dtype == np.float32
    assert edges.shape == orientation.shape == img.shape[:2]
    assert edges.min() >= 0.0 and edges.max() <= 1.0 and edges.max() == pytest.approx(1.0)
    assert orientation.min() >= 0.0 and orientation.max() < math.pi
    for x0, y0, x1, y1 in RECTS:
        ys = np.arange(y0 + 6, y1 - 6)
        xs = np.arange(x0 + 6, x1 - 6)
        # every border pixel has a strong edge within 1 px (the step lies between two pixels)
        for col in (x0, x1):
            assert edges[ys][:, col - 1 : col + 1].max(axis=1).min() > 0.3
            assert np.all(np.minimum(orientation[ys, col - 1], math.pi - orientation[ys, col - 1]) < 0.05)  # ~0: vertical edge
        for row in (y0, y1):
            assert edges[row - 1 : row + 1, xs].max(axis=0).min() > 0.3
            assert np.all(np.abs(orientation[row - 1, xs] - math.pi / 2) < 0.05)  # pi/2: horizontal edge
        # flat insides and background are not edges
        assert edges[y0 + 6 : y1 - 6, x0 + 6 : x1 - 6].max() < 0.05
    assert edges[150:, 150:].max() < 0.05


def test_gradient_orientation_follows_opencv_convention(tmp_path):
    """Our orientation equals StructuredEdgeDetection::computeOrientation of our edge map
    (the convention EdgeBoxes was written for), on a diamond whose edges are diagonal."""
    sed = cv2.ximgproc.createStructuredEdgeDetection(str(write_toy_forest(tmp_path / "toy.yml")))
    img = np.full((96, 96, 3), 30, np.uint8)
    cv2.fillPoly(img, [np.array([[48, 8], [88, 48], [48, 88], [8, 48]])], (220, 200, 180))
    edges, orientation = gradient_edges(img)
    theirs = sed.computeOrientation(edges)
    on_edge = edges_nms(edges, orientation) > 0.5
    assert on_edge.sum() > 200
    diff = np.abs(orientation - theirs)[on_edge]
    diff = np.minimum(diff, math.pi - diff)
    assert np.median(diff) < 0.05
    # the diagonals are pi/4 and 3pi/4 (mod pi), not 0 / pi/2
    assert np.mean(np.minimum(np.abs(orientation[on_edge] - math.pi / 4), np.abs(orientation[on_edge] - 3 * math.pi / 4)) < 0.1) > 0.8


def test_gradient_edges_flat_image():
    edges, orientation = gradient_edges(np.full((20, 30, 3), 128, np.uint8))
    assert edges.shape == (20, 30) and not edges.any()
    assert orientation.min() >= 0.0 and orientation.max() < math.pi


def test_edges_nms_thins_edges():
    img = np.full((64, 64, 3), 30, np.uint8)
    img[:, 32:] = 220
    edges, orientation = gradient_edges(img, sigma=2.0)
    thin = edges_nms(edges, orientation)
    assert thin.dtype == np.float32 and thin.shape == edges.shape
    assert (thin <= edges).all()
    assert ((edges[32] > 0.1).sum()) >= 4  # the smoothed step is several px wide...
    assert 1 <= (thin[32] > 0).sum() <= 2  # ...and one (or two tied) px after NMS
    assert thin.max() == edges.max()


# --------------------------------------------------------------------------- proposals


def test_component_protocol_and_options():
    assert isinstance(EdgeBoxes(), Proposer)
    assert EdgeBoxes.name == "edge-boxes"
    o = EdgeBoxesOptions()
    assert o.max_proposals == 500 and o.edge_model is None
    for field in EdgeBoxesOptions.model_fields.values():
        assert field.description
    with pytest.raises(ValidationError):
        EdgeBoxesOptions(alpha=1.0)
    with pytest.raises(ValidationError):
        EdgeBoxesOptions(max_proposals=-1)
    with pytest.raises(ValidationError):
        EdgeBoxesOptions(min_box_area=1)
    with pytest.raises(ValidationError):
        EdgeBoxesOptions(nonsense=1)


def test_registered_at_the_end_of_registry():
    with open(REGISTRY, "rb") as f:
        entries = tomllib.load(f)["plugin"]
    mine = [e for e in entries if e["name"] == "edge-boxes"]
    assert len(mine) == 1
    assert mine[0]["kind"] == "proposer" and mine[0]["module"] == "visum_plugins.proposers.edge_boxes"


def test_boxes_valid_on_a_photo(photo):
    boxes = EdgeBoxes().propose(photo)
    assert_valid_boxes(boxes, photo)
    assert 50 <= len(boxes) <= 500


def test_scores_are_sorted_and_boxes_follow_them(photo):
    p = EdgeBoxes()
    edges, orientation = p.edge_maps(photo)
    boxes, scores = opencv_edge_boxes(edges, orientation, max_proposals=200, min_box_area=400)
    assert len(boxes) == len(scores) > 0
    assert np.all(np.diff(scores) <= 0) and np.isfinite(scores).all() and (scores > 0).all()
    proposed = EdgeBoxes(EdgeBoxesOptions(max_proposals=200)).propose(photo)
    # propose() keeps that order (it only clips and drops repeats)
    np.testing.assert_array_equal(proposed[:20], np.clip(boxes[:20], 0, 128))


@pytest.mark.parametrize("max_proposals", [0, 1, 7, 60])
def test_max_boxes_honoured(photo, max_proposals):
    boxes = EdgeBoxes(EdgeBoxesOptions(max_proposals=max_proposals)).propose(photo)
    assert boxes.shape == (min(max_proposals, len(boxes)), 4)
    assert len(boxes) <= max_proposals
    if max_proposals:
        assert len(boxes) == max_proposals  # a photo has plenty
        full = EdgeBoxes().propose(photo)
        np.testing.assert_array_equal(boxes, full[:max_proposals])  # best first: a prefix


def test_deterministic(photo):
    a = EdgeBoxes().propose(photo)
    b = EdgeBoxes().propose(photo)
    c = EdgeBoxes().propose(photo.copy())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_finds_high_contrast_rectangles():
    img = rectangles_image()
    boxes = EdgeBoxes().propose(img)
    assert_valid_boxes(boxes, img)
    best = iou(RECTS, boxes[:50]).max(axis=1)
    assert (best > 0.7).all(), best


def test_grayscale_looking_rgb():
    grey = cv2.cvtColor(rectangles_image(), cv2.COLOR_RGB2GRAY)
    img = np.repeat(grey[:, :, None], 3, axis=2)
    boxes = EdgeBoxes().propose(img)
    assert_valid_boxes(boxes, img)
    assert (iou(RECTS, boxes[:50]).max(axis=1) > 0.7).all()


@pytest.mark.parametrize("shape", [(16, 16), (1, 1), (2, 9), (4, 4), (16, 200)])
@pytest.mark.parametrize("min_box_area", [16.0, 400.0])
def test_tiny_images(shape, min_box_area):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    boxes = EdgeBoxes(EdgeBoxesOptions(min_box_area=min_box_area)).propose(img)
    assert boxes.shape[1:] == (4,) and boxes.dtype == np.int64
    if len(boxes):
        assert_valid_boxes(boxes, img)


def test_flat_image_has_no_proposals():
    assert EdgeBoxes().propose(np.full((64, 64, 3), 90, np.uint8)).shape == (0, 4)


def test_rejects_bad_images():
    with pytest.raises(ValueError):
        EdgeBoxes().propose(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError):
        EdgeBoxes().propose(np.zeros((8, 8, 3), np.float32))


# --------------------------------------------------------------------------- structured-edge model


def test_missing_edge_model_names_the_path(tmp_path):
    path = tmp_path / "no" / "model.yml.gz"
    with pytest.raises(ValueError, match="model.yml.gz") as info:
        EdgeBoxes(EdgeBoxesOptions(edge_model=str(path)))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage \x00\x01 {{{", b"%YAML:1.0\n---\nfoo: 1\n", b"%YAML:1.0\n---\noptions: {stride: 2}\n"],
    ids=["empty", "garbage", "yaml-not-a-model", "options-only"],
)
def test_bad_edge_model_names_the_path(tmp_path, content):
    path = tmp_path / "bad-model.yml"
    path.write_bytes(content)
    # a well-formed YAML file that is not a model would crash OpenCV's loader (SIGFPE):
    # it must be refused before OpenCV sees it
    with pytest.raises(ValueError) as info:
        EdgeBoxes(EdgeBoxesOptions(edge_model=str(path)))
    assert str(path) in str(info.value)
    with pytest.raises(ValueError):
        load_structured_edge_model(path)


def test_edge_model_path_runs_opencv_structured_edges(tmp_path):
    path = write_toy_forest(tmp_path / "toy.yml")
    p = EdgeBoxes(EdgeBoxesOptions(edge_model=str(path), min_box_area=100))
    img = rectangles_image()
    edges, orientation = p.edge_maps(img)
    assert edges.shape == orientation.shape == img.shape[:2]
    assert edges.dtype == orientation.dtype == np.float32
    assert edges.min() >= 0 and edges.max() <= 1 and edges.max() > 0
    assert orientation.min() >= 0 and orientation.max() < math.pi
    boxes = p.propose(img)
    assert_valid_boxes(boxes, img)
    np.testing.assert_array_equal(boxes, p.propose(img))
    # images smaller than the forest's 32 px patch are padded, not crashed on
    for shape in [(8, 40), (40, 8), (4, 4)]:
        small = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
        e, o = p.edge_maps(small)
        assert e.shape == o.shape == shape
        b = p.propose(small)
        if len(b):
            assert_valid_boxes(b, small)
