"""Calling plugin code safely: every exception and every malformed result names the plugin.

The pipeline never calls a component method directly; it calls these wrappers, which
turn a plugin's exception into a :class:`~visum.errors.PluginError` and check the result
against its kind's Protocol (type, shape, dtype, range) before anything downstream sees it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch

from visum.components import ClusterQuality
from visum.errors import PluginError, VisumError
from visum.plugins import ComponentInfo


def call(info: ComponentInfo, method: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except VisumError:
        raise
    except Exception as exc:
        raise PluginError(f"{info.label} raised in {method}(): {type(exc).__name__}: {exc}") from exc


def _bad(info: ComponentInfo, method: str, what: str) -> PluginError:
    return PluginError(f"{info.label} returned {what} from {method}()")


def takes_checkpoint(component: Any) -> bool:
    """Whether ``component.explain`` takes a ``checkpoint`` keyword (:class:`visum.saliency_opt.Checkpoint`)."""
    try:
        return "checkpoint" in inspect.signature(component.explain).parameters
    except (TypeError, ValueError):
        return False


def saliency(info: ComponentInfo, component: Any, model: Any, x: torch.Tensor, target: torch.Tensor,
             checkpoint: Any = None) -> np.ndarray:
    """``[B,3,H,W]`` → masks ``[B, H, W]`` float32 in [0, 1]; ``checkpoint`` passed on to a method that takes one."""
    extra = {"checkpoint": checkpoint} if checkpoint is not None else {}
    s = call(info, "explain", component.explain, model, x, target, **extra)
    b, _, h, w = x.shape
    if not isinstance(s, torch.Tensor):
        raise _bad(info, "explain", f"a {type(s).__name__}, not a torch.Tensor")
    if tuple(s.shape) != (b, 1, h, w):
        raise _bad(info, "explain", f"shape {tuple(s.shape)}, expected {(b, 1, h, w)}")
    s = s.detach().float().cpu().numpy()[:, 0]
    if not np.isfinite(s).all():
        raise _bad(info, "explain", "non-finite values")
    if s.min() < -1e-4 or s.max() > 1 + 1e-4:
        raise _bad(info, "explain", f"values in [{s.min():.3g}, {s.max():.3g}], expected [0, 1]")
    return np.clip(s, 0.0, 1.0).astype(np.float32)


def proposals(info: ComponentInfo, component: Any, image: np.ndarray) -> np.ndarray:
    """Image ``[H,W,3]`` → valid boxes ``[M, 4]`` int64 (empty boxes dropped, ends clipped)."""
    boxes = call(info, "propose", component.propose, image)
    if not isinstance(boxes, np.ndarray):
        raise _bad(info, "propose", f"a {type(boxes).__name__}, not a numpy array")
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise _bad(info, "propose", f"shape {boxes.shape}, expected [M, 4]")
    if not np.isfinite(boxes).all():
        raise _bad(info, "propose", "non-finite boxes")
    h, w = image.shape[:2]
    b = np.rint(boxes).astype(np.int64)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    return b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]


def description(info: ComponentInfo, component: Any, image: np.ndarray, boxes: np.ndarray) -> Any:
    return call(info, "describe", component.describe, image, boxes)


def match(info: ComponentInfo, component: Any, d_i: Any, d_j: Any, m_i: int, m_j: int) -> np.ndarray:
    """Two descriptions → ``Q [M_i, M_j]`` float32, finite, >= 0."""
    q = call(info, "match", component.match, d_i, d_j)
    if not isinstance(q, np.ndarray):
        raise _bad(info, "match", f"a {type(q).__name__}, not a numpy array")
    if q.shape != (m_i, m_j):
        raise _bad(info, "match", f"shape {q.shape}, expected {(m_i, m_j)}")
    q = q.astype(np.float32, copy=False)
    if not np.isfinite(q).all() or (q < 0).any():
        raise _bad(info, "match", "negative or non-finite scores")
    return q


def clustering(info: ComponentInfo, component: Any, similarity: sp.csr_matrix) -> np.ndarray:
    """``Corr''`` → labels ``[N]`` int64 (``-1`` = unassigned)."""
    fitted = call(info, "fit", component.fit, similarity)
    labels = getattr(fitted if fitted is not None else component, "labels_", None)
    if labels is None:
        raise _bad(info, "fit", "an object without labels_")
    labels = np.asarray(labels)
    n = similarity.shape[0]
    if labels.shape != (n,) or (n and not np.issubdtype(labels.dtype, np.integer)):
        raise _bad(info, "fit", f"labels_ of shape {labels.shape} and dtype {labels.dtype}, expected [{n}] integers")
    if n and labels.min() < -1:
        raise _bad(info, "fit", "labels below -1")
    return labels.astype(np.int64)


def scores(info: ComponentInfo, component: Any, clusters: list[list[np.ndarray]]) -> list[ClusterQuality]:
    result = call(info, "score", component.score, clusters)
    if not isinstance(result, (list, tuple)) or len(result) != len(clusters):
        got = len(result) if isinstance(result, (list, tuple)) else type(result).__name__
        raise _bad(info, "score", f"{got} verdicts for {len(clusters)} clusters")
    out = []
    for q in result:
        if not isinstance(q, ClusterQuality):
            raise _bad(info, "score", f"a {type(q).__name__}, not a visum.ClusterQuality")
        out.append(ClusterQuality(bool(q.kept), {k: float(v) for k, v in q.quality.items()}))
    return out
