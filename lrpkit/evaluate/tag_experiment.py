"""The horse-tag experiment of lrpkit's scenes, computed once for every report that shows it.

Lapuschkin et al. 2016 (CVPR, Fig. 5, right) found their Fisher-vector model's "horse" decision
resting on a copyright tag in the image corner.  lrpkit's scenes plant such a tag on most horse
images and keep each test image again without it (``test_untagged``).  :func:`tag_experiment`
explains class "horse" on ``tag_images`` random tagged horse test images and on their untagged
twins with every model (the FV model with LRP-eps, eps = 100, Lapuschkin et al. 2016, App. C; a
deep model with the config's LRP, or Gradient x Input for TorchScript) and records the share of
positive relevance in the tag box, the tag's share of the area and the horse score on both
versions (:func:`lrpkit.evaluate.shallow_deep.tag_relevance`).  The result is cached on disk
(:func:`lrpkit.evaluate.result_cache.cached_dataset`, keyed by the model files, the data and
the parameters), so notebooks 02 and 03 show the same numbers and only the first computes them.
:func:`tag_intervals` turns it into intervals over the images: the share on the tag, the
enrichment over the tag's area (a ratio of sums), and the paired score drop tagged minus
untagged, the measure AP is blind to (:mod:`lrpkit.evaluate.twin_drop`).
"""
from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import numpy as np
import xarray as xr

from .intervals import Interval, bootstrap_interval, paired_interval, ratio_interval
from .result_cache import cached_dataset, file_digest

__all__ = ["FV_LRP", "tag_unavailable", "tag_cases", "tag_experiment", "tag_intervals", "TAG_MEASURES"]

#: FV-LRP of the tag experiment (Lapuschkin et al. 2016, App. C: eps = 100)
FV_LRP = {"rule": "epsilon", "epsilon": 100.0, "pca_epsilon": 0.5}
TAG_MEASURES = ("share_tagged", "share_untagged", "enrichment", "score_tagged", "score_untagged",
                "score_drop")


def tag_unavailable(data: Any) -> str | None:
    """Why the tag experiment cannot run on ``data`` (a :class:`lrpkit.sources.DatasetSource`),
    or ``None`` when it can: it needs lrpkit's scenes analysed on ``test`` with a ``horse`` class."""
    if getattr(data, "source", None) != "scenes":
        return "lrpkit's bias-zoo scenes (`dataset.source: scenes`): the planted tag in `bias.csv`"
    if str(data.split) != "test":
        return f"the scenes analysed on `test` (the untagged twins are of `test`; got `{data.split}`)"
    if "horse" not in list(data.classes):
        return "a `horse` class (the tag is planted on horse images)"
    return None


def tag_cases(data: Any, untagged: Any, n: int | None, seed: int = 0) -> list[tuple[str, Any, Any, tuple]]:
    """``n`` random tagged horse images of ``data`` (``default_rng(seed)``, in index order;
    ``None``: all) with their twins in ``untagged``: ``(image id, tagged image, untagged image,
    tag box (x0, y0, x1, y1))`` as :func:`lrpkit.evaluate.shallow_deep.tag_relevance` takes them."""
    from ..data import read_bias

    bias = read_bias(data.root)
    objs = bias[bias.split == str(data.split)]
    pos = {str(i): k for k, i in enumerate(data.ids)}
    upos = {str(i): k for k, i in enumerate(untagged.ids)}
    tagged = objs[(objs["class"] == "horse") & (objs.tag == 1)].drop_duplicates("image_id")
    tagged = tagged[tagged.image_id.astype(str).isin(list(pos))]
    tagged = tagged[[("untagged_" + str(i).split("_", 1)[1]) in upos for i in tagged.image_id]]
    if n is not None:
        if int(n) < 1:
            raise ValueError(f"evaluation.tag_images must be >= 1 or null, got {n!r}")
        tagged = tagged.iloc[sorted(np.random.default_rng(seed).permutation(len(tagged))[:int(n)])]
    cases = []
    for _, row in tagged.iterrows():
        twin = "untagged_" + str(row.image_id).split("_", 1)[1]
        tag = (int(row.tag_xmin), int(row.tag_ymin), int(row.tag_xmax), int(row.tag_ymax))
        cases.append((str(row.image_id), data.image(pos[str(row.image_id)]),
                      untagged.image(upos[twin]), tag))
    return cases


def _deep_params(cfg: Any, model: Any) -> dict[str, Any]:
    from ..heatmaps import heatmap_params

    return heatmap_params(model.model, **cfg.lrp.method_params())[0]


def tag_experiment(cfg: Any, models: Sequence[Any], data: Any, untagged: Any, *,
                   cache_dir: Any = None, progress: bool = False) -> xr.Dataset:
    """The tag experiment (module doc) for the loaded ``models`` (:class:`lrpkit.sources.ModelSource`;
    ``source: fisher`` ones with :data:`FV_LRP`, the others with the config's LRP) on ``data``.

    ``untagged``: a callable returning the ``test_untagged`` split (called only when the result
    is computed), e.g. ``lambda: sources.load_dataset(cfg.dataset, cfg, split="test_untagged")``.
    ``cfg``: the config (``evaluation.tag_images``, ``evaluation.tag_margin``, ``seed``,
    ``lrp``); ``cache_dir``: where the result is cached (e.g. ``<paths.models>/cache``; ``None``:
    computed, not cached).  Raises
    ``ValueError`` with the reason when :func:`tag_unavailable`.  Returns
    :func:`~lrpkit.evaluate.shallow_deep.tag_relevance`'s Dataset with ``attrs`` naming the
    heatmap parameters, ``n_cases`` and whether it came from the cache (``cache_hit``).
    """
    from .shallow_deep import source_map_model, tag_relevance

    why = tag_unavailable(data)
    if why is not None:
        raise ValueError(f"the tag experiment needs {why}")
    ev = cfg.evaluation
    classes = list(data.classes)
    params = {m.name: (dict(FV_LRP, method="fv_lrp") if not m.is_torch else _deep_params(cfg, m))
              for m in models}
    key = {"experiment": "tag", "version": 1,
           "models": [{"name": m.name, "source": m.source, "file": file_digest(m.path) if m.path else "",
                       "params": params[m.name]} for m in models],
           "data": {"root": str(data.root), "split": str(data.split),
                    "bias": file_digest(_bias_file(data.root)), "n_images": len(data)},
           "tag_images": ev.tag_images, "tag_margin": ev.tag_margin, "seed": cfg.seed, "classes": classes}

    def compute() -> xr.Dataset:
        cases = tag_cases(data, untagged(), ev.tag_images, seed=cfg.seed)
        maps = [source_map_model(m, classes, fv_params=FV_LRP) if not m.is_torch
                else source_map_model(m, classes, **params[m.name]) for m in models]
        ds = tag_relevance(maps, cases, target=classes.index("horse"), margin=ev.tag_margin,
                           progress=progress)
        ds.attrs.update(heatmaps=params, n_cases=len(cases), tag_images=str(ev.tag_images),
                        experiment="tagged horse test images and their test_untagged twins "
                                   "(Lapuschkin et al. 2016, Fig. 5 right)")
        return ds

    if cache_dir is None:
        ds = compute()
        ds.attrs["cache_hit"] = 0
        return ds
    return cached_dataset(cache_dir, "tag_experiment", key, compute)


def _bias_file(root: Any):
    from ..data.voc import resolve_voc_root

    return resolve_voc_root(root) / "bias.csv"


def tag_intervals(ds: xr.Dataset, *, n_boot: int = 1000, ci: float = 0.95,
                  seed: int = 0) -> tuple[xr.Dataset, dict[tuple[str, str], Interval]]:
    """Per model, intervals over the tagged images of :func:`tag_experiment`'s Dataset.

    Measures (:data:`TAG_MEASURES`): ``share_tagged`` / ``share_untagged`` (mean share of R+ in
    the tag box, the tagged image and its untagged twin), ``enrichment`` (sum of the shares over
    the sum of the tag's area shares: how many times denser than a uniform map, a ratio of sums),
    ``score_tagged`` / ``score_untagged`` (mean horse score) and ``score_drop`` (tagged minus
    untagged, paired).  Returns a Dataset over (``model``, ``measure``) with ``estimate``,
    ``low``, ``high``, ``n``, and the same as ``{(model, measure): Interval}``.
    """
    models = [str(m) for m in ds["model"].values]
    box = ds["tag_share"].isel(region=0)
    out: dict[tuple[str, str], Interval] = {}
    for m in models:
        sh = box.sel(model=m)
        t, u = sh.isel(version=0).values, sh.isel(version=1).values
        area = ds["tag_area_share"].sel(model=m).values
        s = ds["score"].sel(model=m)
        st, su = s.isel(version=0).values, s.isel(version=1).values
        kw = dict(n_boot=n_boot, ci=ci, seed=seed)
        out[(m, "share_tagged")] = bootstrap_interval(t, **kw)
        out[(m, "share_untagged")] = bootstrap_interval(u, **kw)
        out[(m, "enrichment")] = ratio_interval(t, area, **kw)
        out[(m, "score_tagged")] = bootstrap_interval(st, **kw)
        out[(m, "score_untagged")] = bootstrap_interval(su, **kw)
        out[(m, "score_drop")] = paired_interval(st, su, **kw)
    arr = np.array([[[out[(m, q)].estimate, out[(m, q)].low, out[(m, q)].high, out[(m, q)].n]
                     for q in TAG_MEASURES] for m in models])
    res = xr.Dataset({k: (("model", "measure"), arr[..., i])
                      for i, k in enumerate(("estimate", "low", "high", "n"))},
                     coords={"model": models, "measure": list(TAG_MEASURES)})
    res["n"] = res["n"].astype(np.int64)
    res.attrs.update(resampled="tagged image", n_boot=int(n_boot), ci=float(ci), seed=int(seed))
    return res, out
