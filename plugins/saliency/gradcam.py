"""Grad-CAM (Selvaraju et al. 2017) for convolutional networks and vision transformers.

For class ``c`` and a layer with activations ``A [B, C, h, w]``:

    alpha_k = 1/(h w) * sum_ij dy_c / dA_kij          (the paper's eq. 1)
    L       = ReLU(sum_k alpha_k A_k)                  (eq. 2)

``L [B, 1, h, w]`` is upsampled bilinearly to the input size and divided by a high quantile
of its own values (option ``normalise_quantile``), as every visum baseline. On a conv layer
the map equals Captum's ``LayerGradCam`` followed by ``LayerAttribution.interpolate``
(tested); it is computed here so that token layers can be reshaped first.

Which layer
-----------
One forward and backward pass of the first image (once per model and input size) records,
in execution order, every convolution, BatchNorm and LayerNorm that runs, and every block
of a token sequence (``nn`` modules, or the leaves of an unflattened ``torch.export``
program, recognised by the ATen op they run). A module that runs more than once per
forward pass has no single activation to explain and is skipped.

- **vision transformers** — a *token layer*: a LayerNorm, or a module with submodules that
  maps a token sequence ``[B, T, D]`` to one of the same shape (a transformer block; not a
  projection, an activation, an ``Identity`` or a ``Dropout``), running after the last
  convolution (the patch embedding), with ``T = P + gh * gw``: ``P`` prefix tokens (class,
  distillation, registers) and a grid ``gh x gw``, the patch embedding's output size (or,
  without one, a grid of the image's aspect ratio of at least 4 cells). The last token
  layer *whose grid tokens receive gradient* is explained: in a class-token ViT the grid
  tokens reach the class token for the last time through the last block's attention, so
  this is the last block's first norm (``blocks.11.norm1`` in timm,
  ``encoder.layers.encoder_layer_11.ln_1`` in torchvision); in a mean-pooled ViT it is the
  last block, or the final norm when it comes before the pooling. Tokens become a map by
  dropping the prefix and reshaping ``[B, gh*gw, D] -> [B, D, gh, gw]``
  (:func:`tokens_to_grid`).
- **CNNs** — the last convolution that runs (skipping heads that eval mode does not run),
  or with ``follow_batchnorm`` the BatchNorm its output goes straight into (the conv with
  BN folded in: Grad-CAM of the bare conv differs by a spatially constant term,
  ``sum_k alpha_k (mu_k gamma_k / sigma_k - beta_k)``, that the ReLU turns into a flat
  floor or cut). When that layer lies on a residual branch, so that the block's output does
  not wholly flow through it (the last BatchNorm of a ResNet block, or a shortcut's that
  runs last), the closest enclosing module through which everything flows is explained:
  the block (:func:`is_cut`).

The hooks hand a copy of the explained output downstream, so in-place operations after the
layer (``ReLU(inplace=True)``, a residual ``+=``) cannot change the activations read (as
Captum does).

Option ``layer`` names any module (``model.named_modules()``) whose output is
``[B, C, h, w]`` or a token sequence. A TorchScript module cannot be hooked: Grad-CAM
needs the eager model, a factory, or a ``torch.export`` archive.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
from pydantic import Field

from visum import Component, Options, hookimpl
from visum_plugins.saliency.gradient import normalise_by_quantile, quantile_field

__all__ = [
    "GradCAMOptions",
    "GradCAMSaliency",
    "CamLayer",
    "grad_cam",
    "tokens_to_grid",
    "token_grid",
    "find_cam_layer",
    "is_cut",
    "resolve_layer",
    "layer_kind",
    "register_saliency_methods",
]

#: most prefix tokens a ViT carries before its grid (class, distillation, up to 8 registers)
MAX_PREFIX_TOKENS = 10
#: fewest cells of a token grid guessed from the token count alone
MIN_GRID_TOKENS = 4
#: modules that change nothing at evaluation: never the layer Grad-CAM explains
_NO_OPS = (torch.nn.Identity, torch.nn.Dropout)
#: the default layer found for each model (and input size), so that batches do not search again
_FOUND: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------- pure functions


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of ``dy/dA_k``.

    Shapes: ``activations``, ``gradients`` ``[B, C, h, w]`` → ``[B, 1, h, w]``.
    """
    alpha = gradients.mean(dim=(2, 3), keepdim=True)
    return (alpha * activations).sum(dim=1, keepdim=True).clamp(min=0.0)


def token_grid(
    tokens: int, height: int, width: int, grid: tuple[int, int] | None = None
) -> tuple[int, int, int] | None:
    """``(prefix, gh, gw)`` with ``tokens = prefix + gh * gw`` and ``gh / gw = height / width``.

    With ``grid`` (the patch embedding's ``(gh, gw)``) the grid is that one when the rest
    fits in :data:`MAX_PREFIX_TOKENS` prefix tokens. Otherwise: the fewest prefix tokens
    that leave a grid of the image's aspect ratio and at least :data:`MIN_GRID_TOKENS`
    cells (a pooled ``[B, 1, D]`` sequence is no grid). ``None`` if there is none.
    """
    if grid is not None:
        prefix = tokens - grid[0] * grid[1]
        return (prefix, grid[0], grid[1]) if 0 <= prefix <= MAX_PREFIX_TOKENS else None
    for prefix in range(0, min(MAX_PREFIX_TOKENS, tokens - MIN_GRID_TOKENS) + 1):
        n = tokens - prefix
        gh = round(math.sqrt(n * height / width))
        if gh < 1 or n % gh:
            continue
        gw = n // gh
        if gh * width == gw * height or abs(gh / gw - height / width) <= 1e-6 * max(1.0, height / width):
            return prefix, gh, gw
    return None


def tokens_to_grid(tokens: torch.Tensor, prefix: int, gh: int, gw: int) -> torch.Tensor:
    """``[B, P + gh*gw, D]`` (row-major grid after ``P`` prefix tokens) → ``[B, D, gh, gw]``."""
    b, t, d = tokens.shape
    if t != prefix + gh * gw:
        raise ValueError(f"gradcam: {t} tokens do not make {prefix} prefix tokens and a {gh}x{gw} grid")
    return tokens[:, prefix:].reshape(b, gh, gw, d).permute(0, 3, 1, 2)


def layer_kind(module: torch.nn.Module) -> str | None:
    """``"conv"``, ``"batchnorm"``, ``"layernorm"`` or ``None``.

    ``nn`` modules by class; leaves of an unflattened ``torch.export`` program (which keep
    their names but not their classes) by the ATen op their graph runs.
    """
    if isinstance(module, torch.nn.Conv2d):
        return "conv"
    if isinstance(module, torch.nn.BatchNorm2d):
        return "batchnorm"
    if isinstance(module, torch.nn.LayerNorm):
        return "layernorm"
    graph = getattr(module, "graph", None)
    if graph is None or isinstance(module, torch.jit.ScriptModule) or next(module.children(), None) is not None:
        return None
    ops = " ".join(str(n.target) for n in graph.nodes if n.op == "call_function")
    for kind, op in (("conv", "conv"), ("batchnorm", "batch_norm"), ("layernorm", "layer_norm")):
        if op in ops:
            return kind
    return None


@dataclass(frozen=True)
class CamLayer:
    """The layer Grad-CAM explains; ``grid = (prefix, gh, gw)`` for a token layer, else ``None``."""

    name: str
    module: torch.nn.Module
    grid: tuple[int, int, int] | None = None


def _refuse_torchscript(model: torch.nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(
            "gradcam: a TorchScript model cannot be hooked to read a layer's activations; give the model as "
            "a torch.export archive (*.pt2), a factory, or a timm/torchvision name"
        )


@dataclass
class _Call:
    """One hooked module call of the layer search."""

    name: str
    kind: str
    output: torch.Tensor  # the module's own output, which nothing downstream can change in place
    passed: torch.Tensor  # the copy handed downstream
    input: torch.Tensor | None


def find_cam_layer(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, follow_batchnorm: bool = True
) -> CamLayer:
    """The layer Grad-CAM explains by default (see the module docstring); one forward and one
    backward pass of ``x[:1]``.

    Only modules that run once per forward pass are candidates (a layer applied twice has no
    single activation to explain). Shapes: ``x [B, C, H, W]``, ``target [B]``. Raises
    ``ValueError`` when the model has neither a convolution nor a token layer that runs.
    """
    _refuse_torchscript(model)
    names = {id(m): n for n, m in model.named_modules()}
    kinds = {id(m): layer_kind(m) for m in model.modules() if not isinstance(m, _NO_OPS) and m is not model}
    calls: list[_Call] = []
    counts: dict[str, int] = {}

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            return None
        name = names[id(module)]
        counts[name] = counts.get(name, 0) + 1
        first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        kind = kinds[id(module)]
        if (kind is None and output.ndim == 3 and first is not None and first.shape == output.shape
                and next(module.children(), None) is not None):
            kind = "tokens"  # a shape-preserving container on a sequence: a transformer block
        if kind is None or any(c.passed is output for c in calls):  # a container returning an inner output
            return None
        passed = output.clone()  # later in-place ops (ReLU(inplace=True), +=) change this copy only
        calls.append(_Call(name, kind, output, passed, first))
        return passed

    handles = [m.register_forward_hook(hook) for m in model.modules() if id(m) in kinds]
    h, w = x.shape[2:]
    try:
        with torch.enable_grad():
            xi = x[:1].detach().to(torch.float32).clone().requires_grad_(True)
            score = model(xi)[0, int(target[0])]
            outputs = [c.output for c in calls if c.output.requires_grad]
            found = torch.autograd.grad(score, outputs, allow_unused=True) if outputs else ()
            grads = dict(zip(map(id, outputs), found))
    finally:
        for handle in handles:
            handle.remove()
    once = [c for c in calls if counts[c.name] == 1]
    convs = [i for i, c in enumerate(once) if c.kind == "conv"]
    patch_grid = tuple(once[convs[-1]].output.shape[2:]) if convs and once[convs[-1]].output.ndim == 4 else None
    tokens = []
    for i, c in enumerate(once):
        if c.kind not in ("layernorm", "tokens") or c.output.ndim != 3 or (convs and i < convs[-1]):
            continue
        grid = token_grid(c.output.shape[1], h, w, patch_grid) or token_grid(c.output.shape[1], h, w)
        grad = grads.get(id(c.output))
        if grid is not None and grad is not None and float(grad[:, grid[0]:].abs().sum()) > 0:
            tokens.append((i, grid))
    if tokens:
        i, grid = tokens[-1]
        return CamLayer(once[i].name, model.get_submodule(once[i].name), grid)
    if convs:
        conv = once[convs[-1]]
        name = conv.name
        if follow_batchnorm:
            fed = [c.name for c in once[convs[-1] + 1 :] if c.kind == "batchnorm" and c.input is conv.passed]
            name = fed[0] if fed else name
        if not is_cut(model, x[:1], model.get_submodule(name)):  # on a residual branch: take its block
            for ancestor in _ancestors(name):
                module = model.get_submodule(ancestor)
                if counts.get(ancestor, 0) <= 1 and is_cut(model, x[:1], module):
                    name = ancestor
                    break
        return CamLayer(name, model.get_submodule(name))
    raise ValueError(
        f"gradcam: the model ({type(model).__name__}) has no convolution or transformer token layer that runs once; "
        "pass option layer=<dotted module name> of a layer with [B, C, h, w] or [B, T, D] token output"
    )


def _ancestors(name: str) -> list[str]:
    """``"layer4.1.bn2"`` -> ``["layer4.1", "layer4"]``: the enclosing modules, closest first."""
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1)]


@torch.no_grad()
def is_cut(model: torch.nn.Module, x: torch.Tensor, module: torch.nn.Module) -> bool:
    """Whether everything the model computes flows through ``module``'s output.

    With that output replaced by zeros the logits must no longer depend on the input: two
    different inputs give the same logits. A layer on a residual branch (a ResNet block's
    last BatchNorm, the shortcut's) is not a cut: the block's output is. Shapes: ``x [1, C, H, W]``.
    """

    def zero(_module, _inputs, output):
        return torch.zeros_like(output) if isinstance(output, torch.Tensor) else output

    handle = module.register_forward_hook(zero)
    try:
        a = model(x)
        b = model(torch.flip(x, dims=(-1,)) * 0.5 + 0.25)
    finally:
        handle.remove()
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))


def resolve_layer(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """``model.get_submodule(name)`` with a ``ValueError`` listing similar names when absent."""
    _refuse_torchscript(model)
    try:
        return model.get_submodule(name)
    except AttributeError:
        import difflib

        known = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f"; similar: {', '.join(close)}" if close else f"; e.g. {', '.join(known[-5:])}"
        raise ValueError(f"gradcam: the model has no module named {name!r}{hint}") from None


# --------------------------------------------------------------------------- the plugin


class GradCAMOptions(Options):
    """Options of :class:`GradCAMSaliency`."""

    layer: str | None = Field(
        default=None,
        description=(
            "Dotted name of the module to explain (as in model.named_modules(), e.g. 'features.28', "
            "'_conv_head' or 'blocks.11.norm1'); None picks the last conv that runs, or for a vision "
            "transformer the last token LayerNorm whose grid tokens receive gradient."
        ),
    )
    follow_batchnorm: bool = Field(
        default=True,
        description=(
            "When layer is None and the last conv's output goes straight into a BatchNorm, explain the "
            "BatchNorm's output (the conv with BN folded in, as deployed). Grad-CAM of the bare conv adds a "
            "spatially constant offset that flattens the map after ReLU."
        ),
    )
    normalise_quantile: float = quantile_field()


class GradCAMSaliency(Component):
    """Grad-CAM (Selvaraju et al. 2017) on the last conv layer or a ViT's token grid, ReLU'd, upsampled."""

    name = "gradcam"
    summary = "Selvaraju et al. 2017 Grad-CAM on the last conv layer, or a ViT's token grid; ReLU, bilinear upsampling"
    Options = GradCAMOptions

    def explain(self, model, x: torch.Tensor, target) -> torch.Tensor:
        """``x [B, 3, H, W]``, ``target [B]`` -> ``s [B, 1, H, W]`` float32 in [0, 1]."""
        from visum_plugins.saliency.captum_baselines import check_batch

        target = check_batch(x, target)
        if x.shape[0] == 0:
            return torch.zeros((0, 1, *x.shape[2:]), dtype=torch.float32, device=x.device)
        o = self.options
        h, w = x.shape[2:]
        if o.layer is None:
            found = _FOUND.setdefault(model, {})
            key = (h, w, o.follow_batchnorm)
            if key not in found:  # one search per model and input size, not per batch
                found[key] = find_cam_layer(model, x, target, o.follow_batchnorm)
            layer = found[key]
        else:
            module = resolve_layer(model, o.layer)
            layer = CamLayer(o.layer, module)
        outputs: list[torch.Tensor] = []

        def keep(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                outputs.append(output)
                return output.clone()  # downstream in-place ops change the copy, not the activations
            return None

        handle = layer.module.register_forward_hook(keep)
        try:
            with torch.enable_grad():
                xi = x.detach().to(torch.float32).clone().requires_grad_(True)
                score = model(xi).gather(1, target.view(-1, 1)).sum()
                if not outputs:
                    raise ValueError(f"gradcam: layer {layer.name!r} did not run or returned no tensor")
                grads = torch.autograd.grad(score, outputs, allow_unused=True)
        finally:
            handle.remove()
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(outputs, grads)]
        if len(outputs) > 1 and sum(a.shape[0] for a in outputs) != x.shape[0]:
            raise ValueError(
                f"gradcam: layer {layer.name!r} runs {len(outputs)} times for a batch of {x.shape[0]}; pass option "
                "layer= naming a layer that runs once per forward pass"
            )
        acts = torch.cat([a.detach() for a in outputs]).to(torch.float32)  # several calls: one image each
        grads = torch.cat(grads).to(torch.float32)
        grid = layer.grid
        if acts.ndim == 3:
            grid = grid or token_grid(acts.shape[1], h, w)
            if grid is None:
                raise ValueError(f"gradcam: layer {layer.name!r} outputs {acts.shape[1]} tokens, not a grid of the image")
            acts, grads = tokens_to_grid(acts, *grid), tokens_to_grid(grads, *grid)
        if acts.ndim != 4:
            raise ValueError(
                f"gradcam: layer output must be [B, C, h, w] or [B, T, D] tokens; {layer.name!r} gives {tuple(acts.shape)}"
            )
        cam = grad_cam(acts, grads)
        cam = torch.nn.functional.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)
        return normalise_by_quantile(cam.clamp(min=0.0), o.normalise_quantile).detach()


@hookimpl
def register_saliency_methods():
    return [GradCAMSaliency]
