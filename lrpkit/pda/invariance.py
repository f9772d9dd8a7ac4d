"""Invariance of heatmaps under flips, small rotations and crops (Zhou & Kainz 2018, Fig. 18).

Zhou & Kainz 2018 (an approximation of Zintgraf et al. 2017),
Sec. 3 "Invariance Experiment": the input is flipped, rotated or cropped, explained again, and
the evidence should move with the object.  Here the heatmap of the transformed image is
mapped back to the original frame (flip back, rotate back, resize back into the crop box) and
compared with the original heatmap by Pearson correlation of the 2-D maps (channel sums) over
the pixels both cover.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

__all__ = ["TRANSFORMS", "invariance_correlation", "apply_transform"]

#: name -> description; ``rotate`` is ``angle`` degrees, ``crop`` keeps ``crop`` of each side
TRANSFORMS = {"flip": "horizontal mirror", "rotate": "rotation by `angle` degrees (bilinear)",
              "crop": "centre crop of `crop` of each side, resized back to the input size"}


def _rotate(x: torch.Tensor, angle: float) -> torch.Tensor:
    th = torch.tensor(np.deg2rad(angle), dtype=x.dtype)
    cos, sin = torch.cos(th), torch.sin(th)
    mat = torch.stack([torch.stack([cos, -sin, torch.zeros(())]),
                       torch.stack([sin, cos, torch.zeros(())])]).to(x)[None].expand(x.shape[0], 2, 3)
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def apply_transform(x: torch.Tensor, name: str, angle: float = 10.0, crop: float = 0.8
                    ) -> tuple[torch.Tensor, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]:
    """``(x_t, back)``: the transformed batch and a function mapping a heatmap ``(N, H, W)`` of
    ``x_t`` back to ``x``'s frame, returning ``(map, valid mask)``."""
    n, _, h, w = x.shape
    if name == "flip":
        return x.flip(-1), lambda m: (m.flip(-1), torch.ones_like(m, dtype=torch.bool))
    if name == "rotate":
        def back(m):
            mb = _rotate(m[:, None], -angle)[:, 0]
            ones = _rotate(_rotate(torch.ones_like(m[:, None]), angle), -angle)[:, 0]
            return mb, ones > 0.999
        # the background a rotation reveals is 0 in the normalised space (the data mean)
        return _rotate(x, angle), back
    if name == "crop":
        if not 0 < crop <= 1:
            raise ValueError(f"crop must be in (0, 1], got {crop!r}")
        ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
        t, l = (h - ch) // 2, (w - cw) // 2
        xt = F.interpolate(x[:, :, t:t + ch, l:l + cw], size=(h, w), mode="bilinear",
                           align_corners=False)

        def back(m):
            small = F.interpolate(m[:, None], size=(ch, cw), mode="bilinear", align_corners=False)[:, 0]
            out = torch.zeros_like(m)
            mask = torch.zeros_like(m, dtype=torch.bool)
            out[:, t:t + ch, l:l + cw] = small
            mask[:, t:t + ch, l:l + cw] = True
            return out, mask
        return xt, back
    raise ValueError(f"unknown transform {name!r}; choose from {sorted(TRANSFORMS)}")


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float("nan")


def invariance_correlation(explain_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                           transforms: Sequence[str] = ("flip", "rotate", "crop"),
                           angle: float = 10.0, crop: float = 0.8) -> xr.DataArray:
    """Correlation between each image's heatmap and the back-mapped heatmap of its transforms.

    ``explain_fn(x) -> (N, C, H, W)`` heatmaps (e.g. a ``functools.partial`` of
    :func:`lrpkit.explain` with a fixed target).  Returns ``(image, transform)`` correlations.
    """
    base = explain_fn(x).detach().sum(1).cpu()
    out = np.full((x.shape[0], len(transforms)), np.nan)
    for j, name in enumerate(transforms):
        xt, back = apply_transform(x, name, angle, crop)
        mt = explain_fn(xt).detach().sum(1).cpu()
        mb, mask = back(mt)
        for i in range(x.shape[0]):
            out[i, j] = _corr(base[i][mask[i]], mb[i][mask[i]])
    return xr.DataArray(out, dims=("image", "transform"),
                        coords={"image": np.arange(x.shape[0]), "transform": list(transforms)},
                        name="correlation", attrs={"angle": float(angle), "crop": float(crop)})
