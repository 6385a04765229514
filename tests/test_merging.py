"""Clusters that show the same part merge; clusters of different parts do not."""

import numpy as np
import scipy.sparse as sp

from visum.stages.merging import Apart, MergeRule, colocation, merge_by_features, merge_same_part

PART_BOX = {"eye": [10, 10, 20, 20], "tail": [60, 60, 80, 80], "whole": [0, 0, 100, 100]}


def _world(rows):
    """rows: (image, part, label) -> image_of, boxes, labels; Corr 0.8 within a part, 0.05 across."""
    image_of = np.array([r[0] for r in rows])
    part = [r[1] for r in rows]
    boxes = np.array([PART_BOX[p] for p in part])
    labels = np.array([r[2] for r in rows])
    n = len(rows)
    dense = np.array([[0.8 if part[i] == part[j] else 0.05 for j in range(n)] for i in range(n)])
    np.fill_diagonal(dense, 0)
    return image_of, boxes, labels, sp.csr_matrix(dense)


def test_one_part_split_by_images_merges_by_linkage_and_parts_stay_apart():
    rows = [(i, "eye", 0) for i in range(5)] + [(i, "eye", 1) for i in range(5, 10)] + [(i, "tail", 2) for i in range(10)]
    image_of, boxes, labels, corr = _world(rows)
    out, merges = merge_same_part(labels, corr, image_of, boxes)
    assert merges == [(0, 1, "linkage")]
    assert len(set(out[:10])) == 1 and len(set(out[10:])) == 1 and out[0] != out[10]


def test_co_located_clusters_merge_even_when_they_do_not_look_alike():
    rows = [(i, "eye", 0) for i in range(6)] + [(i, "eye", 1) for i in range(6)] + [(i, "tail", 2) for i in range(6)]
    image_of, boxes, labels, _ = _world(rows)
    corr = sp.csr_matrix((len(rows), len(rows)))  # no similarity at all: only the boxes can tell
    assert colocation(np.arange(6), np.arange(6, 12), image_of, boxes) == (6, 6)
    assert colocation(np.arange(6), np.arange(12, 18), image_of, boxes) == (6, 0)
    out, merges = merge_same_part(labels, corr, image_of, boxes)
    assert merges == [(0, 1, "co-location")] and out.tolist() == [0] * 12 + [1] * 6


def test_a_box_around_the_whole_object_co_locates_with_nothing():
    rows = [(i, "eye", 0) for i in range(6)] + [(i, "whole", 1) for i in range(6)]
    image_of, boxes, labels, _ = _world(rows)
    out, merges = merge_same_part(labels, sp.csr_matrix((12, 12)), image_of, boxes)
    assert merges == [] and out.tolist() == labels.tolist()


def test_thresholds_and_unassigned_points():
    rows = [(i, "eye", 0) for i in range(4)] + [(i, "eye", 1) for i in range(4, 8)] + [(8, "tail", -1)]
    image_of, boxes, labels, corr = _world(rows)
    # between = 0.8 and within = 0.8: a link threshold above 1 refuses the merge
    out, merges = merge_same_part(labels, corr, image_of, boxes, MergeRule(link=1.01))
    assert merges == [] and out[-1] == -1
    out, merges = merge_same_part(labels, corr, image_of, boxes, MergeRule(link=0.99))
    assert len(merges) == 1 and out.tolist() == [0] * 8 + [-1]


def test_a_mixed_cluster_does_not_chain_two_parts_together():
    rows = ([(i, "eye", 0) for i in range(6)] + [(i, "tail", 1) for i in range(6, 12)]
            + [(i, "eye", 2) for i in range(12, 17)] + [(i, "tail", 2) for i in range(17, 22)])
    image_of, boxes, labels, corr = _world(rows)
    out, merges = merge_same_part(labels, corr, image_of, boxes)
    assert out[0] != out[6]  # the eye cluster and the tail cluster stay apart
    assert len(merges) <= 1


def test_successive_merges_update_the_statistics():
    # one part in four clusters over disjoint images: three merges in a row, by linkage
    rows = [(i, "eye", i // 3) for i in range(12)] + [(i, "tail", 9) for i in range(12, 18)]
    image_of, boxes, labels, corr = _world(rows)
    out, merges = merge_same_part(labels, corr, image_of, boxes)
    assert len(merges) == 3 and {m[2] for m in merges} == {"linkage"}
    assert len(set(out[:12])) == 1 and out[12] != out[0]


def test_co_location_outranks_linkage():
    # clusters 0 and 1: same eye, same images (co-located) but dissimilar; 2 and 3: a tail split in two, linked
    rows = ([(i, "eye", 0) for i in range(4)] + [(i, "eye", 1) for i in range(4)]
            + [(i, "tail", 2) for i in range(4, 8)] + [(i, "tail", 3) for i in range(8, 12)])
    image_of, boxes, labels, corr = _world(rows)
    dense = corr.toarray()
    dense[:8, :8] = 0.0
    out, merges = merge_same_part(labels, sp.csr_matrix(dense), image_of, boxes)
    assert merges[0] == (0, 1, "co-location") and merges[1][2] == "linkage"


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_clusters_the_model_sees_alike_merge_and_other_parts_stay_apart():
    rng = np.random.default_rng(0)
    eye, beak = np.eye(4)[0], np.eye(4)[1]
    # clusters 0 and 1: the eye in two poses (a matcher split them); cluster 2: the beak; -1 unassigned
    f = _unit(np.concatenate([eye + 0.1 * rng.standard_normal((4, 4)), eye + 0.1 * rng.standard_normal((3, 4)),
                              beak + 0.1 * rng.standard_normal((4, 4)), rng.standard_normal((1, 4))]))
    labels = np.array([0] * 4 + [1] * 3 + [2] * 4 + [-1])
    merged, merges = merge_by_features(labels, f, threshold=0.9)
    assert merged.tolist() == [0] * 7 + [1] * 4 + [-1]
    assert len(merges) == 1 and merges[0][:2] == (0, 1) and merges[0][2] >= 0.9
    kept, none = merge_by_features(labels, f, threshold=0.999)
    assert none == [] and kept.tolist() == labels.tolist()
    everything, _ = merge_by_features(labels, f, threshold=-1.0)
    assert set(everything[everything >= 0].tolist()) == {0}


def test_feature_merging_uses_the_centroid_of_all_members_after_each_merge():
    # cos(a, b) = 0.8, cos(b, c) ~ 0.75, cos(a, c) ~ 0.2: single linkage would chain c through b;
    # the centroid of five a's and one b is far from c (cos ~ 0.3), so c stays apart
    # (a fourth cluster e opposite to the rest makes the mean feature 0, so centring changes nothing)
    a, b, c = _unit([[1.0, 0.0]]), _unit([[0.8, 0.6]]), _unit([[0.2, 0.98]])
    e = -(5 * a + b + c) / 7
    f = np.concatenate([np.repeat(a, 5, 0), b, c, np.repeat(e, 7, 0)])
    labels = np.array([0] * 5 + [1] + [2] + [3] * 7)
    merged, merges = merge_by_features(labels, f, threshold=0.7)
    assert [m[:2] for m in merges] == [(0, 1)] and abs(merges[0][2] - 0.8) < 1e-9
    assert merged.tolist() == [0] * 6 + [1] + [2] * 7


def test_feature_merging_centres_the_features_first():
    # non-negative (ReLU) features: every raw cosine is high; what tells the clusters apart is the deviation
    base = np.array([5.0, 5.0, 5.0])
    f = np.concatenate([np.tile(base + [1, 0, 0], (3, 1)), np.tile(base + [0, 1, 0], (3, 1)),
                        np.tile(base + [0, 0, 1], (3, 1))])
    labels = np.repeat([0, 1, 2], 3)
    assert float((_unit(f[:1]) @ _unit(f[3:4]).T)[0, 0]) > 0.95  # raw cosine of two different parts
    merged, merges = merge_by_features(labels, f, threshold=0.5)
    assert merges == [] and merged.tolist() == labels.tolist()


def test_clusters_seen_apart_in_the_same_images_never_merge_by_features():
    # clusters 0 and 1 look alike to the model (same features) but sit at two places in the same images
    # (two parts of one object); clusters 0 and 2 look alike and co-locate where they meet (one part, two poses)
    rows = ([(i, "eye", 0) for i in range(4)] + [(i, "tail", 1) for i in range(4)]
            + [(i, "eye", 2) for i in range(2, 6)])
    image_of, boxes, labels, _ = _world(rows)
    f = np.ones((len(rows), 2)) + np.array([[0.0, 0.01 * k] for k in range(len(rows))])
    merged, merges = merge_by_features(labels, f, threshold=-1.0)
    assert set(merged.tolist()) == {0}  # without the test, everything alike merges
    apart = Apart(image_of, boxes, share=0.5)
    assert apart.holds(np.flatnonzero(labels == 0), np.flatnonzero(labels == 1))
    assert not apart.holds(np.flatnonzero(labels == 0), np.flatnonzero(labels == 2))
    merged, merges = merge_by_features(labels, f, threshold=-1.0, apart=apart)
    assert merged[labels == 0].tolist() == merged[labels == 2].tolist() != merged[labels == 1].tolist()
    assert len(merges) == 1 and merges[0][:2] == (0, 2)
    # the merged eye cluster still sits apart from the tail: the veto is recomputed on the union
    assert len(set(merged.tolist())) == 2
    # a share above what the images show lets the pair merge again
    strict = Apart(image_of, boxes, share=1.0)
    assert strict.holds(np.flatnonzero(labels == 0), np.flatnonzero(labels == 1))
    few = Apart(image_of, boxes, share=0.5, min_shared=5)
    assert not few.holds(np.flatnonzero(labels == 0), np.flatnonzero(labels == 1))


def test_merging_after_the_check_unites_kept_clusters_and_leaves_the_rest():
    from visum import ClusterQuality
    from visum.stages.merging import merge_kept

    # nodes 0..7: images 0..3, one region each except image 3 with regions 0 and 1
    image_of = np.array([0, 1, 2, 3, 0, 1, 3, 2])
    region_of = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    clusters = [[(0, 0.5), (1, 0.6)], [(2, 0.4), (3, 0.7)], [(4, 0.9), (5, 0.3), (6, 0.8)], [(7, 0.2)]]
    verdicts = [ClusterQuality(True, {"median_ssim": 0.5}), ClusterQuality(False, {"median_ssim": 0.1}),
                ClusterQuality(True, {"median_ssim": 0.6}), ClusterQuality(True, {"median_ssim": 0.7})]
    out, v, origins = merge_kept(clusters, verdicts, [0, -1, 0, 3], image_of, region_of)
    assert origins == [[0, 2], [1], [3]]
    # clusters 0 and 2 join at cluster 0's place; node 4 (image 0, region 0) beats node 0 there
    assert out == [[(1, 0.6), (4, 0.9), (6, 0.8)], [(2, 0.4), (3, 0.7)], [(7, 0.2)]]
    assert v[0].kept and v[0].quality == {"median_ssim": 0.6, "merged": 2.0}  # the largest cluster's verdict
    assert v[1] is verdicts[1] and v[2] is verdicts[3]
    # image 1 region 0: node 1 (0.6) beats node 5 (0.3); every (image, region) once
    assert {(int(image_of[k]), int(region_of[k])) for k, _ in out[0]} == {(0, 0), (1, 0), (3, 1)}
    # nothing grouped: unchanged
    same, sv, so = merge_kept(clusters, verdicts, [0, -1, 2, 3], image_of, region_of)
    assert same == clusters and sv == verdicts and so == [[0], [1], [2], [3]]


def test_random_boxes_keep_their_sizes_and_stay_inside_the_image():
    from visum.stages.merging import random_boxes_like

    boxes = np.array([[0, 0, 10, 20], [5, 5, 40, 30], [0, 0, 64, 48]])
    sizes = np.array([[48, 64]] * 3)
    out = random_boxes_like(boxes, sizes, np.random.default_rng(0))
    assert (out[:, 2] - out[:, 0]).tolist() == [10, 35, 64] and (out[:, 3] - out[:, 1]).tolist() == [20, 25, 48]
    assert (out[:, :2] >= 0).all() and (out[:, 2] <= 64).all() and (out[:, 3] <= 48).all()
    assert out[2].tolist() == [0, 0, 64, 48]  # a box the size of the image has one place
    again = random_boxes_like(boxes, sizes, np.random.default_rng(0))
    assert (again == out).all()


def test_a_fixed_centre_lets_clusters_of_one_part_merge():
    # three clusters of one part (features near p) and nothing else: centred on their own mean the
    # centroids are noise apart and do not merge; centred on a generic crop's feature they all point to p
    rng = np.random.default_rng(1)
    p, generic = np.array([1.0, 0.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0, 0.0])
    f = p + 0.05 * rng.standard_normal((9, 4))
    labels = np.repeat([0, 1, 2], 3)
    _, own = merge_by_features(labels, f, threshold=0.7)
    merged, fixed = merge_by_features(labels, f, threshold=0.7, centre=generic)
    assert own == [] and len(fixed) == 2 and set(merged.tolist()) == {0}
