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
One forward and backward pass of the first image records, in execution order, every
convolution, BatchNorm and LayerNorm that runs (``nn`` modules, or the leaves of an
unflattened ``torch.export`` program, recognised by the ATen op they run):

- **vision transformers** — a *token layer*: a LayerNorm, or a module with submodules that
  maps a token sequence ``[B, T, D]`` to one of the same shape (a transformer block; not a
  projection, an activation, an ``Identity`` or a ``Dropout``), with ``T = P + gh * gw`` (``P`` prefix tokens: class,
  distillation, registers; the grid ``gh x gw`` has the image's aspect ratio), running
  after the last convolution (the patch embedding). The last token layer *whose grid tokens
  receive gradient* is explained: in a class-token ViT the grid tokens reach the class
  token for the last time through the last block's attention, so this is the last block's
  first norm (``blocks.11.norm1`` in timm, ``encoder.layers.encoder_layer_11.ln_1`` in
  torchvision); in a mean-pooled ViT it is the last block. Tokens become a map by dropping
  the prefix and reshaping ``[B, gh*gw, D] -> [B, D, gh, gw]`` (:func:`tokens_to_grid`).
- **CNNs** — the last convolution that runs (skipping heads that eval mode does not run),
  or with ``follow_batchnorm`` the BatchNorm its output goes straight into (the conv with
  BN folded in: Grad-CAM of the bare conv differs by a spatially constant term,
  ``sum_k alpha_k (mu_k gamma_k / sigma_k - beta_k)``, that the ReLU turns into a flat
  floor or cut).

Option ``layer`` names any module (``model.named_modules()``) whose output is
``[B, C, h, w]`` or a token sequence. A TorchScript module cannot be hooked: Grad-CAM
needs the eager model, a factory, or a ``torch.export`` archive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pydantic import Field

from visum import Component, Options, hookimpl
from visum_plugins.saliency.gradient import normalise_by_quantile

__all__ = [
    "GradCAMOptions",
    "GradCAMSaliency",
    "CamLayer",
    "grad_cam",
    "tokens_to_grid",
    "token_grid",
    "find_cam_layer",
    "last_conv_layer",
    "resolve_layer",
    "layer_kind",
    "register_saliency_methods",
]

#: most prefix tokens a ViT carries before its grid (class, distillation, up to 8 registers)
MAX_PREFIX_TOKENS = 10
#: modules that change nothing at evaluation: never the layer Grad-CAM explains
_NO_OPS = (torch.nn.Identity, torch.nn.Dropout)


# --------------------------------------------------------------------------- pure functions


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of ``dy/dA_k``.

    Shapes: ``activations``, ``gradients`` ``[B, C, h, w]`` → ``[B, 1, h, w]``.
    """
    alpha = gradients.mean(dim=(2, 3), keepdim=True)
    return (alpha * activations).sum(dim=1, keepdim=True).clamp(min=0.0)


def token_grid(tokens: int, height: int, width: int) -> tuple[int, int, int] | None:
    """``(prefix, gh, gw)`` with ``tokens = prefix + gh * gw`` and ``gh / gw = height / width``.

    The fewest prefix tokens (at most :data:`MAX_PREFIX_TOKENS`) that leave a grid of the
    image's aspect ratio; ``None`` if there is none (not a ViT token sequence).
    """
    for prefix in range(0, min(MAX_PREFIX_TOKENS, tokens - 1) + 1):
        n = tokens - prefix
        gh = round(math.sqrt(n * height / width))
        if gh < 1 or n % gh:
            continue
        gw = n // gh
        if abs(gh / gw - height / width) <= 1e-6 * max(1.0, height / width) or gh * width == gw * height:
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


def find_cam_layer(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, follow_batchnorm: bool = True
) -> CamLayer:
    """The layer Grad-CAM explains by default (see the module docstring); one forward/backward of ``x[:1]``.

    Shapes: ``x [B, C, H, W]``, ``target [B]``. Raises ``ValueError`` when the model has
    neither a convolution nor a token LayerNorm that runs.
    """
    _refuse_torchscript(model)
    names = {id(m): n for n, m in model.named_modules()}
    kinds = {id(m): layer_kind(m) for m in model.modules() if not isinstance(m, _NO_OPS) and m is not model}
    records: list[tuple[str, str, torch.Tensor, torch.Tensor | None]] = []  # name, kind, output, input

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            return
        first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        kind = kinds[id(module)]
        if (kind is None and output.ndim == 3 and first is not None and first.shape == output.shape
                and next(module.children(), None) is not None):
            kind = "tokens"  # a shape-preserving container on a sequence: a transformer block
        if kind is None or any(r[2] is output for r in records):  # a container returning an inner output
            return
        if output.requires_grad:
            output.retain_grad()
        records.append((names[id(module)], kind, output, first))

    handles = [m.register_forward_hook(hook) for m in model.modules() if id(m) in kinds]
    h, w = x.shape[2:]
    try:
        with torch.enable_grad():
            xi = x[:1].detach().to(torch.float32).clone().requires_grad_(True)
            logits = model(xi)
            logits[0, int(target[0])].backward()
    finally:
        for handle in handles:
            handle.remove()
    convs = [i for i, r in enumerate(records) if r[1] == "conv"]
    tokens = []
    for i, (name, kind, out, _) in enumerate(records):
        if kind not in ("layernorm", "tokens") or out.ndim != 3 or out.grad is None:
            continue
        grid = token_grid(out.shape[1], h, w)
        if grid is not None and float(out.grad[:, grid[0]:].abs().sum()) > 0:
            tokens.append((i, grid))
    try:
        if tokens and (not convs or tokens[-1][0] > convs[-1]):
            i, grid = tokens[-1]
            return CamLayer(records[i][0], model.get_submodule(records[i][0]), grid)
        if convs:
            i = convs[-1]
            name = records[i][0]
            if follow_batchnorm:
                out = records[i][2]
                fed = [r[0] for r in records[i + 1 :] if r[1] == "batchnorm" and r[3] is out]
                name = fed[0] if fed else name
            return CamLayer(name, model.get_submodule(name))
    finally:
        records.clear()
    raise ValueError(
        f"gradcam: the model ({type(model).__name__}) has no convolution or transformer token layer that runs; "
        "pass option layer=<dotted module name> of a layer with [B, C, h, w] or [B, T, D] token output"
    )


def last_conv_layer(
    model: torch.nn.Module, x: torch.Tensor, follow_batchnorm: bool = False
) -> tuple[str, torch.nn.Module]:
    """The last convolution that runs on ``x[:1]`` (or the BatchNorm it feeds): ``(name, module)``."""
    _refuse_torchscript(model)
    if not any(layer_kind(m) == "conv" for m in model.modules()):
        raise ValueError(
            f"gradcam: the model ({type(model).__name__}) has no nn.Conv2d layer to explain; "
            "pass option layer=<dotted module name> of a layer with [B, C, h, w] output"
        )
    names = {id(m): n for n, m in model.named_modules()}
    ran: list[str] = []
    last_out: list[torch.Tensor] = []
    folded: dict[str, str] = {}

    def conv_hook(module, _inp, out):
        ran.append(names[id(module)])
        last_out[:] = [out]

    def bn_hook(module, inp, _out):
        if ran and last_out and inp and inp[0] is last_out[0]:
            folded[ran[-1]] = names[id(module)]

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if layer_kind(m) == "conv"]
    if follow_batchnorm:
        handles += [m.register_forward_hook(bn_hook) for m in model.modules() if layer_kind(m) == "batchnorm"]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
        last_out.clear()
    name = ran[-1] if ran else [n for n, m in model.named_modules() if layer_kind(m) == "conv"][-1]
    name = folded.get(name, name)
    return name, model.get_submodule(name)


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
    normalise_quantile: float = Field(
        default=0.995, gt=0.0, le=1.0,
        description="Each map is divided by this quantile of its own values, then clipped to [0, 1]; "
        "1.0 divides by the maximum. Same convention as the 'gradient' plugin.",
    )


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
            layer = find_cam_layer(model, x, target, o.follow_batchnorm)
        else:
            module = resolve_layer(model, o.layer)
            layer = CamLayer(o.layer, module)
        outputs: list[torch.Tensor] = []
        handle = layer.module.register_forward_hook(lambda _m, _i, out: outputs.append(out))
        try:
            with torch.enable_grad():
                xi = x.detach().to(torch.float32).clone().requires_grad_(True)
                logits = model(xi)
                score = logits.gather(1, target.view(-1, 1)).sum()
                if not outputs or not all(isinstance(o_, torch.Tensor) for o_ in outputs):
                    raise ValueError(f"gradcam: layer {layer.name!r} did not run or returned no tensor")
                grads = torch.autograd.grad(score, outputs, allow_unused=True)
        finally:
            handle.remove()
        acts = torch.cat([a.detach() for a in outputs]).to(torch.float32)
        grads = torch.cat([torch.zeros_like(a) if g is None else g for a, g in zip(outputs, grads)]).to(torch.float32)
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
