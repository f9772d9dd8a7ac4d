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

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._freeze import frozen
from ..inputs import check_input, resolve_target
from ..params import InstanceOf, Interval, declare
from .games import _memory_format

__all__ = ["occlusion", "gradcam", "default_gradcam_layer"]


def _spread(h: torch.Tensor, C: int) -> torch.Tensor:
    return (h / C).expand(-1, C, -1, -1).contiguous()


@declare(window=Interval(int, 1, None), stride=Interval(int, 1, None), value=Interval(float),
         batch_size=Interval(int, 1, None))
def occlusion(model: nn.Module, x: torch.Tensor, target: Any = "pred", *, window: int = 16,
              stride: int = 8, value: float = 0.0, batch_size: int = 256) -> torch.Tensor:
    """Occlusion sensitivity by a sliding ``window x window`` grey square moved by ``stride``.

    Windows start at ``0, stride, ...`` and a last one flush with the border, so every pixel
    is covered.  Relevance = mean over covering windows of ``p_c(x) - p_c(x occluded)``.
    """
    x = check_input(x).detach()
    t = resolve_target(model, x, target)
    N, C, H, W = x.shape
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
    fmt = _memory_format(model, x)     # channels-last on CPU where the model takes it (faster)
    with frozen(model), torch.no_grad():
        p0 = model(x).float().softmax(1)[rows, t]
        per = max(1, batch_size // N)
        for k in range(0, len(pos), per):
            chunk = pos[k:k + per]
            xb = x.unsqueeze(0).repeat(len(chunk), 1, 1, 1, 1)
            for q, (i, j) in enumerate(chunk):
                xb[q, :, :, i:i + window, j:j + window] = value
            xb = xb.flatten(0, 1).contiguous(memory_format=fmt)
            p = model(xb).float().softmax(1).view(len(chunk), N, -1)
            drop = p0[None] - p[:, rows, t]                 # (chunk, N)
            for q, (i, j) in enumerate(chunk):
                rel[:, 0, i:i + window, j:j + window] += drop[q].to(x.dtype)[:, None, None]
    return _spread(rel / cover, C)


_WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


def _trace(model: nn.Module, x: torch.Tensor) -> tuple[Any, dict[str, tuple]]:
    """One forward with a hook on every module: ``name -> (completion index, output shape or
    None, output tensor or None)`` of each module that ran (its last call)."""
    rec: dict[str, tuple] = {}
    count = itertools.count()
    handles = []
    for name, mod in model.named_modules():
        def hook(_m, _i, out, name=name):
            t = out if isinstance(out, torch.Tensor) else None
            rec[name] = (next(count), None if t is None else tuple(t.shape), t)
        handles.append(mod.register_forward_hook(hook))
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, rec


def _inside(outer: str, name: str) -> bool:
    return outer == "" or name == outer or name.startswith(outer + ".")


def _pick_layer(model: nn.Module, rec: dict[str, tuple], size: tuple) -> str:
    """The default Grad-CAM layer from a :func:`_trace` (see :func:`default_gradcam_layer`)."""
    mods = dict(model.named_modules())
    ran = [n for n in mods if n in rec]
    convs = [n for n in ran if isinstance(mods[n], nn.Conv2d)]
    if not convs:
        raise ValueError(f"gradcam: {type(model).__name__} runs no Conv2d layer; pass "
                         f"layer=<module name> of an (N, K, h, w) feature map")
    weights = [n for n in ran if isinstance(mods[n], _WEIGHT_LAYERS)]
    last_weight = max(weights, key=lambda n: rec[n][0])
    head = last_weight if last_weight in convs else None   # a conv computing the class scores
    feature_convs = [c for c in convs if c != head]

    def has_conv(n):
        return any(_inside(n, c) for c in feature_convs)

    def spatial(n):
        s = rec[n][1]
        return s is not None and len(s) == 4 and s[2] * s[3] > 1

    def children(parent: str):
        """The children of ``parent`` that ran; containers that are not called themselves
        (``ModuleList``) are replaced by their children."""
        for k, _ in mods[parent].named_children():
            k = f"{parent}.{k}" if parent else k
            if k in rec:
                yield k
            elif k in mods:
                yield from children(k)

    def search(parent: str) -> tuple[str, str] | None:
        kids = sorted(children(parent), key=lambda k: rec[k][0])
        for i in range(len(kids) - 1, -1, -1):
            k = kids[i]
            if not has_conv(k):
                continue
            if spatial(k) and not (head is not None and _inside(k, head)):
                j = i    # extend over element-wise layers after it (BN, activation, dropout)
                while (j + 1 < len(kids) and not any(_inside(kids[j + 1], w) for w in weights)
                       and rec[kids[j + 1]][1] == rec[k][1]):
                    j += 1
                return k, kids[j]
            # search inside stages (Sequential) and wrappers (no map output), not inside a
            # block whose output is a 1 x 1 map: its inner maps are partial (one branch, before
            # the residual sum)
            s = rec[k][1]
            if isinstance(mods[k], nn.Sequential) or s is None or len(s) != 4:
                found = search(k)
                if found is not None:
                    return found
        return None

    found = search("")
    if found is None:
        last = max(feature_convs or convs, key=lambda n: rec[n][0])
        raise ValueError(f"gradcam: {type(model).__name__} has no convolutional feature map "
                         f"larger than 1x1 at input size {size[0]}x{size[1]} (its last Conv2d "
                         f"{last!r} outputs {rec[last][1]}); pass layer=<module name> or a "
                         f"larger input")
    block, layer = found
    t0 = rec[block][0]
    for n in ran:
        if rec[n][0] <= t0 or _inside(n, block):    # ran before it, or one of its ancestors
            continue
        s, m = rec[n][1], mods[n]
        tokens = s is not None and len(s) == 3
        channels_last = (type(m) is nn.LayerNorm and s is not None and len(s) == 4
                         and tuple(m.normalized_shape) == s[-1:] and s[1] != s[-1])
        if tokens or channels_last or isinstance(m, nn.MultiheadAttention):
            what = ("token sequences" if tokens else "channels-last maps" if channels_last
                    else "attention")
            raise ValueError(
                f"gradcam: no convolutional feature map feeds the classifier of "
                f"{type(model).__name__}: after {block!r} it works on {what} ({type(m).__name__} "
                f"{n!r} outputs {s}), as vision transformers do (attention / LayerNorm over "
                f"tokens; out of scope for the default layer); pass layer=<module name> of an "
                f"(N, K, h, w) feature map")
    return layer


def default_gradcam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The last spatial convolutional feature map of ``model`` at the input ``x``.

    Found by one forward with hooks (no gradient, eval mode): walking the module tree from the
    top, the last module to run that contains a ``Conv2d`` and outputs an ``(N, K, h, w)`` map
    with ``h w > 1`` -- the outermost such block (``layer4`` of a ResNet, ``features`` of
    VGG / DenseNet / MobileNet / SqueezeNet, ``inception5b`` of GoogLeNet), extended over the
    element-wise layers that follow it (batch-norm, activation, dropout: same shape).  A stage
    (``Sequential``) or wrapper whose output is not such a map is searched inside (AlexNet at
    64 px: ``features.11``, the last ReLU before the final max-pool); a block with its own
    forward is not (its inner maps are partial: one branch, before the residual sum), so
    ResNet50 at 32 px gives ``layer3``.  A convolution that computes the class scores (the
    last layer with weights, SqueezeNet's ``classifier.1``) is not a feature map.

    Raises ``ValueError`` asking for ``layer=`` when no map larger than 1 x 1 exists at this
    input size, or when the map is followed by token sequences / attention / channels-last
    LayerNorm (vision transformers: ``conv_proj`` of a ViT is a patch embedding, not a
    feature map).
    """
    x = check_input(x).detach()
    with frozen(model), torch.no_grad():
        _, rec = _trace(model, x)
    return _pick_layer(model, rec, tuple(x.shape[-2:]))


@declare(layer=[InstanceOf(str, name="a module name"), None])
def gradcam(model: nn.Module, x: torch.Tensor, target: Any = "pred", *,
            layer: str | None = None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2) at module ``layer`` (default:
    :func:`default_gradcam_layer`, found in the same forward), upsampled bilinearly to the
    input size, spread over channels.

    The forward hooks used to read the layer are removed in a ``finally``.
    """
    x = check_input(x).detach()
    t = resolve_target(model, x, target)
    mods = dict(model.named_modules())
    if layer is not None and layer not in mods:
        raise ValueError(f"gradcam: layer {layer!r} is not a module of the model")
    store: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        store["A"] = out

    with frozen(model):
        xin = x.clone().requires_grad_(True)
        with torch.enable_grad():
            if layer is None:
                out, rec = _trace(model, xin)
                layer = _pick_layer(model, rec, tuple(x.shape[-2:]))
                A = rec[layer][2]
                del rec
            else:
                h = mods[layer].register_forward_hook(hook)
                try:
                    out = model(xin)
                finally:
                    h.remove()
                A = store.get("A")
            if not isinstance(A, torch.Tensor) or A.dim() != 4:
                raise ValueError(f"gradcam: layer {layer!r} must output a 4-D tensor "
                                 f"(N, K, h, w), got {getattr(A, 'shape', type(A))}")
            score = out.gather(1, t[:, None]).sum()
            (g,) = torch.autograd.grad(score, A)
    alpha = g.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((alpha * A.detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return _spread(cam.to(x.dtype), x.shape[1])
