"""Measured bias statistics of a generated scene set against the planted rates.

:func:`bias_summary` reads the sidecar (``bias.csv``, see :mod:`lrpkit.data.scenes`) and
returns, per split, the rates the generator planted and the rates actually present, with a
binomial standard error, so a notebook can show at a glance that the data carries the biases
an analysis is about to look for:

========================  =========================================================  ==========
statistic                 measured as                                                planted
========================  =========================================================  ==========
``context_match``         images whose background is their first object's context   0.85 + 0.15/5
``tag_given_horse``       images with a horse that carry the copyright tag           0.70
``tag_given_no_horse``    images without a horse that carry the tag                  0.03
``two_objects``           images with two objects                                    0.20 (easy),
                                                                                     0.30 (realistic)
``landscape``             landscape images                                           0.70
``bus_yellow``            buses whose body hue is within 15 degrees of the yellow    1.0
``car_hue_uniformity``    normalised entropy of car hues over 12 bins (1: uniform)   1.0
``texture_sheep_auc``     ROC AUC of ``texture_energy`` separating sheep from the    1.0
                          other objects (1: every sheep more textured than any other)
========================  =========================================================  ==========

On ``test_swapped`` the context is broken (planted ``context_match`` 1/5) and on
``test_untagged`` no image carries a tag.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import xarray as xr

from .realism import get_preset
from .scenes import BIAS_RATES, read_bias

__all__ = ["bias_summary", "planted_rates", "realism_summary", "REALISM_STATISTICS"]

STATISTICS = ("context_match", "tag_given_horse", "tag_given_no_horse", "two_objects",
              "landscape", "bus_yellow", "car_hue_uniformity", "texture_sheep_auc")
#: statistics that are not rates (no binomial standard error)
NON_RATES = ("car_hue_uniformity", "texture_sheep_auc")


def planted_rates(split: str, preset: str = "easy") -> dict[str, float]:
    """The rates the generator plants in ``split`` under ``preset`` (see the table above)."""
    R = BIAS_RATES
    P = get_preset(preset)
    p_two = R["p_two_objects"] if P.name == "easy" else P.p_objects[1] / sum(P.p_objects)
    p_ctx = R["p_context"] + (1 - R["p_context"]) / 5
    rates = {"context_match": p_ctx, "tag_given_horse": R["p_tag_horse"],
             "tag_given_no_horse": R["p_tag_other"], "two_objects": p_two,
             "landscape": R["p_landscape"], "bus_yellow": 1.0, "car_hue_uniformity": 1.0,
             "texture_sheep_auc": 1.0}
    if split == "test_swapped":
        rates["context_match"] = 1 / 5
    if split == "test_untagged":
        rates["tag_given_horse"] = rates["tag_given_no_horse"] = 0.0
    return rates


def _hue_uniformity(hues: np.ndarray, bins: int = 12) -> float:
    if len(hues) == 0:
        return float("nan")
    counts, _ = np.histogram(np.mod(hues, 360), bins=bins, range=(0, 360))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(bins))


def _texture_auc(objs: Any) -> float:
    """ROC AUC of the objects' texture energy for "is a sheep" (nan without both groups)."""
    from sklearn.metrics import roc_auc_score

    y = (objs["class"] == "sheep").to_numpy()
    if len(y) == 0 or y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, objs["texture_energy"].to_numpy(float)))


def bias_summary(source: Any, splits: Sequence[str] | None = None,
                 yellow_hue: float = 48.0, hue_tolerance: float = 15.0) -> xr.Dataset:
    """Planted and measured bias rates per split of a scene set (root folder or sidecar frame).

    Returns a Dataset with dims ``split`` and ``statistic`` holding ``measured``,
    ``planted``, ``stderr`` (binomial, ``nan`` for the entropy) and ``n`` (images or objects
    the rate is over).
    """
    import pandas as pd

    df = source if isinstance(source, pd.DataFrame) else read_bias(os.fspath(source))
    preset = str(df["preset"].iloc[0]) if "preset" in df and len(df) else "easy"
    if splits is None:
        splits = [s for s in ("train", "val", "test", "test_swapped", "test_untagged")
                  if (df["split"] == s).any()]
    unknown = sorted(set(splits) - set(df["split"].unique()))
    if unknown:
        raise ValueError(f"split(s) {unknown} not in the sidecar; have {sorted(df['split'].unique())}")
    meas = np.full((len(splits), len(STATISTICS)), np.nan)
    plant = np.full_like(meas, np.nan)
    n = np.zeros_like(meas, dtype=np.int64)
    for i, split in enumerate(splits):
        objs = df[df["split"] == split]
        img = objs.groupby("image_id").agg(context_match=("context_match", "first"),
                                           tag=("tag", "first"), n_objects=("n_objects", "first"),
                                           orientation=("orientation", "first"),
                                           horse=("class", lambda c: bool((c == "horse").any())))
        buses = objs[objs["class"] == "bus"]
        d_hue = np.abs((buses["hue"].to_numpy(float) - yellow_hue + 180) % 360 - 180)
        cars = objs[objs["class"] == "car"]["hue"].to_numpy(float)
        tex = objs.dropna(subset=["texture_energy"]) if "texture_energy" in objs else objs.iloc[:0]
        # rates: boolean flags (binomial stderr); other statistics: (value, n) (no stderr)
        values = {
            "context_match": img["context_match"].to_numpy(bool),
            "tag_given_horse": img.loc[img["horse"], "tag"].to_numpy() == 1,
            "tag_given_no_horse": img.loc[~img["horse"], "tag"].to_numpy() == 1,
            "two_objects": img["n_objects"].to_numpy() == 2,
            "landscape": img["orientation"].to_numpy() == "landscape",
            "bus_yellow": d_hue <= hue_tolerance,
            "car_hue_uniformity": (_hue_uniformity(cars), len(cars)),
            "texture_sheep_auc": (_texture_auc(tex), len(tex)),
        }
        p = planted_rates(split, preset)
        for j, stat in enumerate(STATISTICS):
            v = values[stat]
            plant[i, j] = p[stat]
            if isinstance(v, tuple):
                meas[i, j], n[i, j] = v
            elif len(v):
                meas[i, j], n[i, j] = v.mean(), len(v)
    stderr = np.sqrt(np.clip(meas * (1 - meas), 0, None) / np.maximum(n, 1))
    for stat in NON_RATES:
        stderr[:, STATISTICS.index(stat)] = np.nan
    coords = {"split": list(splits), "statistic": list(STATISTICS)}
    dims = ("split", "statistic")
    return xr.Dataset({"measured": (dims, meas), "planted": (dims, plant),
                       "stderr": (dims, stderr), "n": (dims, n)}, coords=coords,
                      attrs={"description": "planted vs measured bias rates of the bias-zoo scenes",
                             "preset": preset})


#: statistics of :func:`realism_summary`
REALISM_STATISTICS = ("objects_per_image", "three_objects", "box_area_q05", "box_area_q50", "box_area_q95",
                      "truncated", "difficult", "occlusion_mean", "occluded_10", "occluded_50",
                      "distractors_per_image", "occluders_per_image", "blurred")


def realism_summary(source: Any, splits: Sequence[str] | None = None) -> xr.Dataset:
    """Measured realism of a scene set (root folder or sidecar frame), per split.

    ``objects_per_image``, ``three_objects`` (share of images), ``box_area_q05/q50/q95``
    (quantiles of the object box area over the image area), ``truncated`` and ``difficult``
    (VOC flags, share of objects), ``occlusion_mean`` (mean hidden share of an object's in-image
    mass), ``occluded_10`` / ``occluded_50`` (share of objects more than 10 % / 50 % hidden),
    ``distractors_per_image``, ``occluders_per_image`` and ``blurred`` (share of defocused
    images).  Returns a Dataset (dims ``split``, ``statistic``) with ``value`` and ``n``.
    """
    import pandas as pd

    df = source if isinstance(source, pd.DataFrame) else read_bias(os.fspath(source))
    if "preset" not in df:
        raise ValueError("the sidecar has no realism columns (format version < 3); regenerate the scenes")
    if splits is None:
        splits = [s for s in ("train", "val", "test", "test_swapped", "test_untagged") if (df["split"] == s).any()]
    val = np.full((len(splits), len(REALISM_STATISTICS)), np.nan)
    n = np.zeros(val.shape, np.int64)
    for i, split in enumerate(splits):
        o = df[df["split"] == split]
        if not len(o):
            raise ValueError(f"split {split!r} not in the sidecar; have {sorted(df['split'].unique())}")
        img = o.drop_duplicates("image_id")
        area = o["box_area"].to_numpy(float)
        blur = pd.to_numeric(img["blur"], errors="coerce").fillna(0).to_numpy()
        occ = o["occlusion"].to_numpy(float)
        v = {"objects_per_image": (img["n_objects"].mean(), len(img)),
             "three_objects": ((img["n_objects"] == 3).mean(), len(img)),
             "box_area_q05": (np.quantile(area, 0.05), len(o)), "box_area_q50": (np.quantile(area, 0.5), len(o)),
             "box_area_q95": (np.quantile(area, 0.95), len(o)),
             "truncated": (o["truncated"].astype(bool).mean(), len(o)),
             "difficult": (o["difficult"].astype(bool).mean(), len(o)),
             "occlusion_mean": (occ.mean(), len(o)), "occluded_10": ((occ > 0.1).mean(), len(o)),
             "occluded_50": ((occ > 0.5).mean(), len(o)),
             "distractors_per_image": (img["n_distractors"].mean(), len(img)),
             "occluders_per_image": (img["n_occluders"].mean(), len(img)),
             "blurred": ((blur > 0).mean(), len(img))}
        for j, st in enumerate(REALISM_STATISTICS):
            val[i, j], n[i, j] = v[st]
    dims = ("split", "statistic")
    preset = str(df["preset"].iloc[0]) if len(df) else ""
    return xr.Dataset({"value": (dims, val), "n": (dims, n)},
                      coords={"split": list(splits), "statistic": list(REALISM_STATISTICS)},
                      attrs={"description": "measured realism of a bias-zoo scene set", "preset": preset})
