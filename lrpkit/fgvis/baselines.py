"""The comparison methods of FGVis' faithfulness table (Wagner et al., CVPR 2019, Table 2).

* :func:`occlusion` - Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
  ECCV 2014: slide a grey square (``value = 0``, the data mean of the normalised input space)
  over the image; a pixel's relevance is the mean drop of the target's softmax score over the
  windows that cover it.
* :func:`gradcam` - Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization", ICCV 2017, eq. 1-2: ``ReLU(sum_k alpha_k A^k)`` with
  ``alpha_k`` the spatial mean of ``d y_c / d A^k``, bilinearly upsampled to the input.

Both return maps of the input's shape ``(N, C, H, W)`` with the per-pixel value spread evenly
over the channels (``value / C`` in each), so that :func:`lrpkit.viz.channel_sum` gives the
2-D map (the convention of :func:`lrpkit.lrp.pool_channels`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..explain import check_input, resolve_target

__all__ = ["occlusion", "gradcam", "default_gradcam_layer"]


def _spread(h: torch.Tensor, C: int) -> torch.Tensor:
    return (h / C).expand(-1, C, -1, -1).contiguous()


def occlusion(model: nn.Module, x: torch.Tensor, target: Any = "pred", *, window: int = 16,
              stride: int = 8, value: float = 0.0, batch_size: int = 256) -> torch.Tensor:
    """Occlusion sensitivity by a sliding ``window x window`` grey square moved by ``stride``.

    Windows start at ``0, stride, ...`` and a last one flush with the border, so every pixel
    is covered.  Relevance = mean over covering windows of ``p_c(x) - p_c(x occluded)``.
    """
    from .games import frozen

    x = check_input(x).detach()
    t = resolve_target(model, x, target)
    N, C, H, W = x.shape
    for name, v in (("window", window), ("stride", stride), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if window > min(H, W):
        raise ValueError(f"window ({window}) exceeds the image size {H}x{W}")

    def starts(n):
        s = list(range(0, n - window + 1, stride))
        if s[-1] != n - window:
            s.append(n - window)
        return s

    pos = [(i, j) for i in starts(H) for j in starts(W)]
    rel = torch.zeros(N, 1, H, W, dtype=x.dtype, device=x.device)
    cover = torch.zeros(1, 1, H, W, dtype=x.dtype, device=x.device)
    for i, j in pos:
        cover[..., i:i + window, j:j + window] += 1
    rows = torch.arange(N, device=x.device)
    with frozen(model), torch.no_grad():
        p0 = model(x).float().softmax(1)[rows, t]
        per = max(1, batch_size // N)
        for k in range(0, len(pos), per):
            chunk = pos[k:k + per]
            xb = x.unsqueeze(0).repeat(len(chunk), 1, 1, 1, 1)
            for q, (i, j) in enumerate(chunk):
                xb[q, :, :, i:i + window, j:j + window] = value
            p = model(xb.flatten(0, 1)).float().softmax(1).view(len(chunk), N, -1)
            drop = p0[None] - p[:, rows, t]                 # (chunk, N)
            for q, (i, j) in enumerate(chunk):
                rel[:, 0, i:i + window, j:j + window] += drop[q].to(x.dtype)[:, None, None]
    return _spread(rel / cover, C)


def default_gradcam_layer(model: nn.Module) -> str:
    """The top-level child of ``model`` holding its last ``Conv2d`` (``features`` for VGG /
    AlexNet / the scene CNN, ``layer4`` for ResNet), or that conv itself when it is top-level."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            last = name
    if last is None:
        raise ValueError("gradcam: the model has no Conv2d layer; pass layer=<module name>")
    return last.split(".")[0]


def gradcam(model: nn.Module, x: torch.Tensor, target: Any = "pred", *,
            layer: str | None = None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2) at module ``layer`` (default:
    :func:`default_gradcam_layer`), upsampled bilinearly to the input size, spread over channels.

    The forward hook used to read the layer is removed in a ``finally``.
    """
    from .games import frozen

    x = check_input(x).detach()
    t = resolve_target(model, x, target)
    if layer is None:
        layer = default_gradcam_layer(model)
    mods = dict(model.named_modules())
    if layer not in mods:
        raise ValueError(f"gradcam: layer {layer!r} is not a module of the model")
    store: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        store["A"] = out

    with frozen(model):
        h = mods[layer].register_forward_hook(hook)
        try:
            xin = x.clone().requires_grad_(True)
            with torch.enable_grad():
                out = model(xin)
                A = store.get("A")
                if not isinstance(A, torch.Tensor) or A.dim() != 4:
                    raise ValueError(f"gradcam: layer {layer!r} must output a 4-D tensor "
                                     f"(N, K, h, w), got {getattr(A, 'shape', type(A))}")
                score = out.gather(1, t[:, None]).sum()
                (g,) = torch.autograd.grad(score, A)
        finally:
            h.remove()
    alpha = g.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((alpha * A.detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return _spread(cam.to(x.dtype), x.shape[1])
