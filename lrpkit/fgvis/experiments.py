"""FGVis experiments as xarray Datasets: Table 1, Table 2, the colour and the tag probes.

Wagner, Koehler, Gindele, Hetzel, Wiedemer, Behnke, "Interpretable and Fine-Grained Visual
Explanations for Convolutional Neural Networks", CVPR 2019.

* :func:`defence_validation` - Sec. 3.2 / Table 1: for confidently classified images, target
  the least-likely class (the second least-likely when it is the reference image's prediction,
  footnote 4), play the generation game with no sparsity term, with and without the defence,
  and count how often the explanation is classified as that adversarial class.
* :func:`faithfulness` - Sec. 5.1 / Table 2: the deletion metric (Petsiuk et al., "RISE",
  BMVC 2018) of FGVis (deletion game, ``1 - m`` as importance) against other heatmap methods.
* :func:`channel_swap` / :func:`colour_bias` - Sec. 4.3 / Table A3: the share of correctly
  classified images that keep their class after the paper's colour swaps of BGR images (BGR -> RBG,
  -> GRB: cyclic shifts, :data:`SWAPS`; RGB transpositions as a labelled extra),
  per class; and preservation-game masks: how much of each colour channel they keep.
* :func:`tag_bias` - deletion-game mask mass inside the copyright-tag box for tagged images
  against their untagged twins (lrpkit's planted artefact, cf. Sec. 4.3 "Learned objects").
* :func:`load_split` - images of a generated scene split as model inputs, with labels and the
  sidecar's boxes mapped into the model's crop.

All experiments batch every image into one optimisation (one forward / backward per step).
"""
from __future__ import annotations

import json
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from PIL import Image

from .._freeze import frozen
from .._geometry import input_geometry
from .._version import __version__
from ..data import VOCDataset, read_bias
from ..data.scenes import tag_box
from ..data.transforms import MEAN, STD, denormalize, normalize, to_tensor_batch
from ..evaluate.context import box_mask, box_to_crop
from ..evaluate.intervals import wilson_interval
from ..evaluate.perturbation import deletion_insertion
from ..explain import explain
from ..inputs import check_input, resolve_target
from .games import fgvis, make_reference

__all__ = ["defence_validation", "confidence_cut", "faithfulness", "channel_swap", "SWAPS", "TRANSPOSITIONS",
           "colour_bias", "tag_bias", "load_split", "combine", "DEFAULT_FAITHFULNESS_METHODS"]

#: The colour swaps of Table A3 (Wagner et al. 2019, Sec. 4.3) as indices into RGB channels.  The
#: paper's network reads BGR (Caffe) images and swaps them to "RBG" and "GRB": the B, G, R slots
#: receive R, B, G (resp. G, R, B), i.e. *cyclic shifts* in which every channel moves.  On an RGB
#: image the same colour change is new (R, G, B) = old (G, B, R) for "RBG" and old (B, R, G) for
#: "GRB" (a yellow bus turns violet / cyan; no colour keeps its hue).
SWAPS: dict[str, tuple[int, int, int]] = {"RBG": (1, 2, 0), "GRB": (2, 0, 1)}

#: Transpositions of two RGB channels (one channel stays): the probe lrpkit ran before reading the
#: paper's BGR convention, kept as an extra, labelled set (R <-> G keeps a yellow bus yellow).
TRANSPOSITIONS: dict[str, tuple[int, int, int]] = {"G<->B (transposition)": (0, 2, 1),
                                                   "R<->G (transposition)": (1, 0, 2),
                                                   "R<->B (transposition)": (2, 1, 0)}

#: Table 2's comparison: method -> explain() parameters (FGVis: deletion game, 1 - m)
DEFAULT_FAITHFULNESS_METHODS: dict[str, dict[str, Any]] = {
    "fgvis": {"game": "deletion", "output": "relevance"},
    "lrp": {},
    "sensitivity": {},
    "occlusion": {},
    "gradcam": {},
}


def _attrs(**params: Any) -> dict[str, Any]:
    out = {"lrpkit_version": __version__, "paper": "Wagner et al., CVPR 2019 (FGVis)"}
    for k, v in params.items():
        out[k] = v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else json.dumps(v, default=str)
    return out


def _scores(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    with frozen(model), torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).float().softmax(1)
                          for i in range(0, len(x), batch_size)])


def _labels_ok(pred: torch.Tensor, labels: Any) -> torch.Tensor:
    """Whether each prediction is a true label (labels: (N,) ints or (N, K) multi-hot)."""
    lab = torch.as_tensor(np.asarray(labels))
    if lab.dim() == 1:
        return pred == lab.long()
    if lab.dim() == 2:
        return lab[torch.arange(len(pred)), pred] > 0
    raise ValueError(f"labels must be (N,) class indices or (N, K) multi-hot, got shape {tuple(lab.shape)}")


# ------------------------------------------------------------------------------- Table 1

def confidence_cut(top: Any, confidence: float = 0.995, min_images: int | None = None) -> float:
    """The confidence cut for Table 1: the paper's ``confidence`` (0.995, Wagner et al. 2019,
    Sec. 3.2) when at least ``min_images`` of the top softmax scores ``top`` reach it, else the
    best available cut: the ``min_images``-th highest score (all images when fewer)."""
    t = np.sort(np.asarray(top, dtype=np.float64).ravel())[::-1]
    if min_images is None or t.size == 0 or int((t >= confidence).sum()) >= int(min_images):
        return float(confidence)
    return float(t[min(int(min_images), t.size) - 1])


def defence_validation(model: nn.Module, x: torch.Tensor, labels: Any = None, *,
                       confidence: float = 0.995, min_images: int | None = None,
                       max_images: int | None = None, steps: int = 60,
                       lr: float = 0.1, goal_score: float = 0.5,
                       goal_scores: Sequence[float] | None = None, similarity: str = "prob",
                       reference: Any = "zero", patience: int | None = 15, seed: int = 0,
                       ids: Sequence[str] | None = None, classes: Sequence[str] | None = None,
                       progress: bool = False) -> xr.Dataset:
    """Table 1 of the paper: how often the generation game reaches an adversarial class.

    ``classes``: names of the model's outputs (default ``model.classes``, else ``"0"`` ...).

    Images: those of ``x`` whose top softmax score is ``>= confidence`` (the paper: 0.995 on
    ImageNet) and, with ``labels``, whose prediction is a true label; the first ``max_images``
    of them.  With ``min_images``: when fewer images reach ``confidence``, the cut is lowered to
    the best available one (:func:`confidence_cut`: the ``min_images``-th highest score among
    them), and ``attrs`` say so (``confidence_paper``, ``n_at_paper_cut``, ``confidence_used``;
    per image ``at_paper_cut``).  Target ``c_A``: each image's least-likely
    class, or its second least-likely when that is the reference image's prediction (paper
    footnote 4).  Generation game (start ``m = 0``), no sparsity term, similarity on the
    target's softmax score, run with and without the defence, all images in one batch; an
    image stops when it succeeds at the highest goal, or when its target score has not risen
    by 0.001 for ``patience`` steps (the defended runs stall early: this saves most of their
    steps; ``None``: run all ``steps``).  Success ("the adversarial class was generated") at
    goal ``g``: an iterate's arg-max is ``c_A`` with a softmax score ``>= g`` (the paper's
    adversarials reach ~1.0; on a 6-class model a bare arg-max near the uniform grey image
    would be no evidence); ``goal_score`` is Table 1's goal, ``goal_scores`` the goals of the
    curve (one run serves all: :attr:`~lrpkit.fgvis.games.FGVisResult.peak_score`).

    Returns a Dataset with dims ``image``, ``defence`` (``"off"``, ``"on"``) and ``goal``:
    ``reached`` (image, defence: at ``goal_score``), ``reached_at`` (image, defence, goal),
    ``peak_score`` (the highest target score with ``c_A`` the arg-max; NaN: never), ``score``
    (target score of the last explanation), ``steps_run``; per image ``target``, ``pred``,
    ``confidence``, ``at_paper_cut``; ``share`` (defence) = the Table 1 ratio with its Wilson
    95 % interval ``share_low`` / ``share_high`` and ``n``; ``curve`` / ``curve_low`` /
    ``curve_high`` (defence, goal): the same over the goals; ``share_by_pred`` (pred_class,
    defence) and ``n_by_pred``: the ratio per predicted class of the image (on the bias-zoo
    scenes a bus's least-likely class is often "car", whose evidence -- a vehicle on a road --
    *is* in the image: the model tells them apart by colour alone).
    """
    x = check_input(x).detach()
    p = _scores(model, x)
    top, pred = p.max(1)
    ok = torch.ones(len(x), dtype=torch.bool)
    if labels is not None:
        ok = _labels_ok(pred, labels)
    n_paper = int((ok & (top >= float(confidence))).sum())
    cut = confidence_cut(top[ok].numpy(), confidence, min_images)
    keep = ok & (top >= cut)
    sel = keep.nonzero(as_tuple=True)[0]
    if max_images is not None:
        sel = sel[:int(max_images)]
    if len(sel) == 0:
        raise ValueError(f"no image is classified with confidence >= {confidence}; lower confidence")
    goals = sorted({float(goal_score), *(float(g) for g in (goal_scores or ()))})
    if not all(0.0 < g <= 1.0 for g in goals):
        raise ValueError(f"goal_score and goal_scores must lie in (0, 1], got {goals}")
    xs, ps = x[sel], p[sel]
    r = make_reference(xs, reference, seed=seed)
    pred_r = _scores(model, r).argmax(1)
    order = ps.argsort(1)
    target = torch.where(order[:, 0] == pred_r, order[:, 1], order[:, 0])
    peak, score, steps_run = [], [], []
    for d in (False, True):
        res = fgvis(model, xs, target, game="generation", defence=d, steps=steps, lr=lr,
                    sparsity=0.0, similarity=similarity, reference=reference, stop="class",
                    goal_score=goals[-1], patience=patience, seed=seed, progress=progress)
        peak.append(res.peak_score.numpy())
        score.append(res.score.numpy())
        steps_run.append(res.steps_run.numpy())
    img = [str(ids[i]) for i in sel.tolist()] if ids is not None else [str(i) for i in sel.tolist()]
    peak_a = np.stack(peak, 1)                                    # (image, defence)
    with np.errstate(invalid="ignore"):
        reached_at = peak_a[..., None] >= np.asarray(goals)       # NaN peak: never reached
    reached_a = reached_at[..., goals.index(float(goal_score))]
    n = len(sel)
    classes = list(classes) if classes is not None else getattr(model, "classes", None)
    K = p.shape[1]
    pred_sel = pred[sel].numpy()
    by_pred = np.full((K, 2), np.nan)
    n_pred = np.bincount(pred_sel, minlength=K)
    for c in range(K):
        if n_pred[c]:
            by_pred[c] = reached_a[pred_sel == c].mean(0)
    share_iv = [wilson_interval(int(k), n) for k in reached_a.sum(0)]
    curve_iv = [[wilson_interval(int(k), n) for k in row] for row in reached_at.sum(0)]
    cls_names = list(classes) if classes and len(classes) == K else [str(c) for c in range(K)]
    ds = xr.Dataset(
        {"reached": (("image", "defence"), reached_a),
         "reached_at": (("image", "defence", "goal"), reached_at),
         "peak_score": (("image", "defence"), peak_a),
         "score": (("image", "defence"), np.stack(score, 1)),
         "steps_run": (("image", "defence"), np.stack(steps_run, 1)),
         "target": ("image", target.numpy()),
         "pred": ("image", pred_sel),
         "confidence": ("image", top[sel].numpy()),
         "at_paper_cut": ("image", (top[sel] >= float(confidence)).numpy()),
         "share": ("defence", reached_a.mean(0)),
         "share_low": ("defence", np.array([iv.low for iv in share_iv])),
         "share_high": ("defence", np.array([iv.high for iv in share_iv])),
         "n": n,
         "curve": (("defence", "goal"), reached_at.mean(0)),
         "curve_low": (("defence", "goal"), np.array([[iv.low for iv in r] for r in curve_iv])),
         "curve_high": (("defence", "goal"), np.array([[iv.high for iv in r] for r in curve_iv])),
         "share_by_pred": (("pred_class", "defence"), by_pred),
         "n_by_pred": ("pred_class", n_pred)},
        coords={"image": img, "defence": ["off", "on"], "goal": goals, "pred_class": cls_names},
        attrs=_attrs(experiment="defence_validation (Table 1)", confidence=float(cut),
                     confidence_paper=float(confidence), confidence_used=float(cut),
                     n_at_paper_cut=n_paper, min_images=-1 if min_images is None else int(min_images),
                     steps=steps, lr=lr, goal_score=goal_score, similarity=similarity,
                     patience=-1 if patience is None else patience,
                     reference=str(reference), seed=seed, n_candidates=int(len(x)),
                     n_images=int(n), reference_pred=pred_r.tolist()[:1],
                     interval="Wilson 95 % (Wilson 1927)",
                     classes=list(classes) if classes else None))
    return ds


# ------------------------------------------------------------------------------- Table 2

def faithfulness(model: nn.Module, x: torch.Tensor, target: Any = "pred", *,
                 methods: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
                 fgvis_params: Mapping[str, Any] | None = None, n_steps: int = 28,
                 ids: Sequence[str] | None = None, progress: bool = False,
                 ties: str = "random", seed: int = 0) -> xr.Dataset:
    """Table 2: deletion-metric AUC (lower is better) of FGVis against other methods.

    ``methods``: ``{name: explain() parameters}`` or a list of registered names (default
    :data:`DEFAULT_FAITHFULNESS_METHODS`: FGVis deletion game with ``1 - m`` as importance, LRP,
    sensitivity, occlusion, Grad-CAM).  A method name may carry a suffix after ``"@"``
    (``"lrp@epsilon"``) to run one registered method with two parameter sets.
    ``fgvis_params`` are added to FGVis' parameters (steps, lr ...).  The curves come from
    :func:`lrpkit.evaluate.deletion_insertion` (zero substrate, ``ceil(H W / n_steps)`` pixels
    per step, the target's softmax score).  ``ties``: how pixels of equal importance are ordered
    (:func:`lrpkit.evaluate.perturbation.pixel_order`): ``"random"`` (default, seeded by ``seed``,
    the same order for every method) - most pixels of an FGVis deletion mask are exactly 0, and
    ``"index"`` (a stable sort) would delete them in raster order, top rows first.

    Returns a Dataset: ``curve`` (method, image, step: the deletion curve), ``auc`` (method,
    image: its trapezoid area over the deleted fraction), ``mean_auc`` (method),
    ``insertion_auc`` (method, image; RISE's insertion metric, higher is better),
    ``tied_share`` (method, image: the share of pixels tied at the map's lowest importance, deleted
    last in random order; most of an FGVis deletion mask), ``target``.
    """
    x = check_input(x).detach()
    t = resolve_target(model, x, target)
    if methods is None:
        methods = DEFAULT_FAITHFULNESS_METHODS
    if not isinstance(methods, Mapping):
        methods = {m: dict(DEFAULT_FAITHFULNESS_METHODS.get(m, {})) for m in methods}
    names = list(methods)
    H, W = x.shape[-2:]
    sp = -(-H * W // int(n_steps))
    curves, ins_auc, tied = [], [], []
    it = names
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(names, desc="faithfulness", leave=False)
    for name in it:
        params = dict(methods[name])
        base = name.split("@")[0]
        if base == "fgvis":
            params = {**params, **dict(fgvis_params or {})}
        heat = explain(model, x, t, method=base, **params)
        di = deletion_insertion(model, x, heat, t, step_pixels=sp, substrate="zero", ties=ties,
                                seed=seed)
        h = heat.detach().float().cpu()
        h = (h.sum(1) if h.dim() == 4 else h).flatten(1)
        tied.append((h == h.min(1, keepdim=True).values).double().mean(1).numpy())
        curves.append(di["deletion"].values)
        ins_auc.append(di["insertion_auc"].values)
        frac = di["fraction"].values
    curve = np.stack(curves)
    auc = np.trapezoid(curve, frac, axis=-1)
    img = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(x))]
    return xr.Dataset(
        {"curve": (("method", "image", "step"), curve),
         "auc": (("method", "image"), auc),
         "mean_auc": ("method", auc.mean(1)),
         "insertion_auc": (("method", "image"), np.stack(ins_auc)),
         "tied_share": (("method", "image"), np.stack(tied)),
         "target": ("image", t.numpy())},
        coords={"method": names, "image": img, "step": np.arange(curve.shape[-1]),
                "fraction": ("step", frac)},
        attrs=_attrs(experiment="faithfulness (Table 2, deletion metric; lower is better)",
                     methods={k: dict(v) for k, v in methods.items()},
                     fgvis_params=dict(fgvis_params or {}), n_steps=n_steps, ties=ties,
                     seed=int(seed)))


# ------------------------------------------------------------------------------- Sec. 4.3

def channel_swap(x: torch.Tensor, order: str | Sequence[int], *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> torch.Tensor:
    """Swap the colour channels of normalised images ``x``: back to RGB pixel space
    (:func:`lrpkit.data.transforms.denormalize`, no clamping), reorder, normalise again.
    ``mean`` / ``std``: the model's normalisation ``(pixel - mean) / std`` (RGB, pixels in
    ``[0, 1]``; default ImageNet's, :data:`lrpkit.data.transforms.MEAN` / ``STD``).

    ``order``: a name of :data:`SWAPS` (the paper's cyclic shifts ``"RBG"``, ``"GRB"``) or of
    :data:`TRANSPOSITIONS` (two channels exchanged), or three channel indices (new channel ``i``
    = old channel ``order[i]``).
    """
    if isinstance(order, str):
        named = {**SWAPS, **TRANSPOSITIONS}
        if order not in named:
            raise ValueError(f"unknown channel order {order!r}; expected one of {tuple(named)}")
        idx = named[order]
    else:
        idx = tuple(int(i) for i in order)
        if sorted(idx) != [0, 1, 2]:
            raise ValueError(f"order must be a permutation of (0, 1, 2), got {order!r}")
    x = check_input(x)
    if mean is None and std is None:
        rgb = denormalize(x, clamp=False)
        return normalize(rgb[:, list(idx)])
    m = torch.as_tensor(MEAN if mean is None else mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.as_tensor(STD if std is None else std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    rgb = x * s + m
    return (rgb[:, list(idx)] - m) / s


def colour_bias(model: nn.Module, x: torch.Tensor, labels: Any, *,
                classes: Sequence[str] | None = None, swaps: Sequence[str] = ("RBG", "GRB"),
                mask_classes: Sequence[str] = ("bus", "car"), mask_images: int = 8,
                boxes: Sequence[Any] | None = None, fgvis_params: Mapping[str, Any] | None = None,
                ids: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, progress: bool = False) -> xr.Dataset:
    """The colour-bias probe of Sec. 4.3 / Table A3, and preservation masks per channel.

    ``mean`` / ``std``: the model's input normalisation, for the swaps (:func:`channel_swap`).

    Part 1 (Table A3): an image is correctly classified when its arg-max is one of its
    ``labels`` (``(N, K)`` multi-hot or ``(N,)`` ints); for each class ``c`` the share of the
    images correctly classified as ``c`` that are still classified as ``c`` after each channel
    swap (``kept`` (class, swap) = ``kept_count / n_correct`` with its Wilson 95 % interval
    ``kept_low`` / ``kept_high``;
    ``n_correct`` (class); ``kept_mean`` averages the paper's cyclic swaps (:data:`SWAPS`) as its
    83.3 % / 8.3 %).  ``swaps`` may add :data:`TRANSPOSITIONS` (coordinate ``swap_kind`` labels
    each swap ``"cyclic (paper)"``, ``"transposition (extra)"`` or ``"custom"``).

    Part 2 (Fig. 7): preservation-game masks (target = the class) for up to ``mask_images``
    correctly classified images of each of ``mask_classes``; per image and channel
    ``mask_mean`` (mean mask value in the object's box, or the whole image without ``boxes``)
    and ``colour_kept`` = ``sum(m_c |x_c|) / sum(|x_c|)`` over the box: the share of the
    channel's deviation from the data-mean grey (its colour information, the reference being
    the zero image) that the explanation keeps.  ``boxes[i]``: ``(x0, y0, x1, y1)`` in input
    pixels (or ``None``).  Class-level means: ``mask_mean_by_class``, ``colour_kept_by_class``;
    the masks and explanations themselves: ``mask``, ``explanation`` (masked_image, channel, y, x).
    """
    x = check_input(x).detach()
    classes = list(classes) if classes is not None else list(getattr(model, "classes", None) or [])
    p = _scores(model, x)
    K = p.shape[1]
    if not classes:
        classes = [str(k) for k in range(K)]
    if len(classes) != K:
        raise ValueError(f"classes has {len(classes)} names, the model {K} outputs")
    pred = p.argmax(1)
    ok = _labels_ok(pred, labels)
    swaps = [str(sw) for sw in swaps]
    kept = np.full((K, len(swaps)), np.nan)
    bounds = np.full((2, K, len(swaps)), np.nan)
    n_correct = np.zeros(K, dtype=np.int64)
    kept_count = np.zeros((K, len(swaps)), dtype=np.int64)
    for si, sw in enumerate(swaps):
        pred_sw = _scores(model, channel_swap(x, sw, mean=mean, std=std)).argmax(1)
        for c in range(K):
            sel = ok & (pred == c)
            n_correct[c] = int(sel.sum())
            if n_correct[c]:
                k_c = int((pred_sw[sel] == c).sum())
                kept_count[c, si] = k_c
                iv = wilson_interval(k_c, n_correct[c])
                kept[c, si], bounds[:, c, si] = iv.estimate, (iv.low, iv.high)
    kind = ["cyclic (paper)" if sw in SWAPS else "transposition (extra)" if sw in TRANSPOSITIONS
            else "custom" for sw in swaps]
    paper = np.array([kd == "cyclic (paper)" for kd in kind]) if "cyclic (paper)" in kind \
        else np.ones(len(swaps), bool)
    data: dict[str, Any] = {
        "kept": (("class", "swap"), kept),
        "kept_low": (("class", "swap"), bounds[0]),
        "kept_high": (("class", "swap"), bounds[1]),
        "kept_count": (("class", "swap"), kept_count),
        "kept_mean": ("class", np.array([np.nan if np.isnan(k[paper]).all() else np.nanmean(k[paper])
                                         for k in kept])),
        "n_correct": ("class", n_correct),
    }
    coords: dict[str, Any] = {"class": classes, "swap": swaps, "swap_kind": ("swap", kind),
                              "channel": ["R", "G", "B"]}
    # part 2: preservation masks
    rows, mclass = [], []
    for name in mask_classes:
        if name not in classes:
            raise ValueError(f"mask class {name!r} is not one of the model's classes {classes}")
        c = classes.index(name)
        sel = (ok & (pred == c)).nonzero(as_tuple=True)[0][:int(mask_images)]
        rows += sel.tolist()
        mclass += [name] * len(sel)
    if rows:
        params = {"game": "preservation", **dict(fgvis_params or {})}
        params.pop("output", None)
        xs = x[rows]
        tgt = torch.tensor([classes.index(n) for n in mclass])
        res = fgvis(model, xs, tgt, progress=progress, **params)
        m = res.mask.numpy()
        region = np.ones(m.shape[:1] + m.shape[2:], bool)
        if boxes is not None:
            for j, i in enumerate(rows):
                if boxes[i] is not None:
                    region[j] = box_mask(m.shape[2:], boxes[i])
        ax = np.abs(xs.numpy())
        reg = region[:, None]
        mask_mean = (m * reg).sum((2, 3)) / reg.sum((2, 3))
        colour_kept = (m * ax * reg).sum((2, 3)) / np.maximum((ax * reg).sum((2, 3)), 1e-12)
        mid = [str(ids[i]) if ids is not None else str(i) for i in rows]
        data.update({"mask_mean": (("masked_image", "channel"), mask_mean),
                     "colour_kept": (("masked_image", "channel"), colour_kept),
                     "mask_class": ("masked_image", np.array(mclass)),
                     "mask_score": ("masked_image", res.score.numpy()),
                     "mask_score_image": ("masked_image", res.score_image.numpy()),
                     "mask": (("masked_image", "channel", "y", "x"), m.astype(np.float32)),
                     "explanation": (("masked_image", "channel", "y", "x"),
                                     res.explanation.numpy().astype(np.float32))})
        coords["masked_image"] = mid
        by = sorted(set(mclass), key=list(mask_classes).index)
        data["mask_mean_by_class"] = (("mask_class_name", "channel"),
                                      np.stack([mask_mean[np.array(mclass) == b].mean(0) for b in by]))
        data["colour_kept_by_class"] = (("mask_class_name", "channel"),
                                        np.stack([colour_kept[np.array(mclass) == b].mean(0) for b in by]))
        coords["mask_class_name"] = by
    return xr.Dataset(data, coords=coords, attrs=_attrs(
        experiment="colour bias (Sec. 4.3, Table A3)", swaps=list(swaps),
        mask_classes=list(mask_classes), fgvis_params=dict(fgvis_params or {}),
        n_images=int(len(x))))


def tag_bias(model: nn.Module, x_tagged: torch.Tensor, x_untagged: torch.Tensor,
             boxes: Any, target: Any, *, fgvis_params: Mapping[str, Any] | None = None,
             ids: Sequence[str] | None = None, progress: bool = False) -> xr.Dataset:
    """Deletion-game mask mass inside the tag box, tagged images against their untagged twins.

    ``boxes``: the tag box of each image ``(x0, y0, x1, y1)`` in input pixels (one box or
    ``(N, 4)``).  Both variants are explained for the same ``target`` (e.g. ``horse``) in one
    batch.  Per image and variant: ``box_share`` = share of the deleted mass ``sum(1 - m)``
    that lies in the box; ``deleted_in`` / ``deleted_out``: mean ``1 - m`` inside / outside the
    box, ``box_density`` their per-image ratio (> 1: the mask deletes the tag preferentially; a
    near-zero ``deleted_out`` makes it explode: average with a ratio of sums,
    :func:`lrpkit.evaluate.intervals.ratio_interval`); ``score`` / ``score_image``: target
    scores of the explanation and of the image; and ``box_fraction``: the box's share of the
    image (the share expected without preference).
    """
    xt = check_input(x_tagged, "x_tagged").detach()
    xu = check_input(x_untagged, "x_untagged").detach()
    if xt.shape != xu.shape:
        raise ValueError(f"x_tagged {tuple(xt.shape)} and x_untagged {tuple(xu.shape)} differ in shape")
    N = xt.shape[0]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 1 and N > 1:
        b = np.repeat(b, N, 0)
    if len(b) != N:
        raise ValueError(f"boxes must hold one box per image ({N}), got {len(b)}")
    t = resolve_target(model, xt, target)
    params = {"game": "deletion", **dict(fgvis_params or {})}
    params.pop("output", None)
    res = fgvis(model, torch.cat([xt, xu]), torch.cat([t, t]), progress=progress, **params)
    deleted = (1.0 - res.mask.numpy()).sum(1)                  # (2N, H, W)
    inside = np.stack([box_mask(deleted.shape[1:], b[i % N]) for i in range(2 * N)])
    tot = deleted.sum((1, 2))
    share = (deleted * inside).sum((1, 2)) / np.maximum(tot, 1e-12)
    din = (deleted * inside).sum((1, 2)) / np.maximum(inside.sum((1, 2)), 1)
    dout = (deleted * ~inside).sum((1, 2)) / np.maximum((~inside).sum((1, 2)), 1)
    density = din / np.maximum(dout, 1e-12)
    r2 = lambda a: np.asarray(a).reshape(2, N).T  # noqa: E731  (variant-major -> (image, variant))
    img = [str(i) for i in ids] if ids is not None else [str(i) for i in range(N)]
    return xr.Dataset(
        {"box_share": (("image", "variant"), r2(share)),
         "box_density": (("image", "variant"), r2(density)),
         "deleted_in": (("image", "variant"), r2(din)),
         "deleted_out": (("image", "variant"), r2(dout)),
         "deleted_mass": (("image", "variant"), r2(tot)),
         "score": (("image", "variant"), r2(res.score.numpy())),
         "score_image": (("image", "variant"), r2(res.score_image.numpy())),
         "box_fraction": ("image", inside[:N].mean((1, 2))),
         "target": ("image", t.numpy())},
        coords={"image": img, "variant": ["tagged", "untagged"]},
        attrs=_attrs(experiment="tag bias (deletion-game mask mass in the tag box)",
                     fgvis_params=dict(fgvis_params or {})))


# ------------------------------------------------------------------------------- data

def load_split(root: Any, split: str, model: nn.Module, *, n: int | None = None,
               ids: Sequence[str] | None = None, transform: Any = None,
               box_map: Any = None) -> dict[str, Any]:
    """Images of a generated scene split as model inputs, with labels and boxes in the crop.

    Returns ``{"x": (N, 3, c, c) tensor, "labels": (N, K) multi-hot, "ids": [...],
    "classes": [...], "objects": [[(class, box in crop px), ...] per image],
    "tag_box": [box in crop px or None per image]}``; ``size`` / ``crop`` come from
    ``model.meta`` (the model's preprocessing, :func:`lrpkit.heatmaps.input_geometry`), ``n``
    takes the first ``n`` images.  Another model's preprocessing: ``transform`` (PIL image ->
    input tensor) with ``box_map(boxes, (width, height))`` -> boxes in input pixels (e.g. a
    :class:`lrpkit.sources.ModelSource`'s ``transform`` and ``input_boxes``).
    """
    if (transform is None) != (box_map is None):
        raise ValueError("transform and box_map go together: pass both or neither")
    if transform is None:
        size, crop = input_geometry(model)
        transform = lambda im: to_tensor_batch([im], size, crop)[0]  # noqa: E731
        box_map = lambda b, wh: box_to_crop(b, wh, size, crop)  # noqa: E731
    ds = VOCDataset(root, split)
    if ids is not None:
        pos = {k: i for i, k in enumerate(ds.ids)}
        missing = [k for k in ids if k not in pos]
        if missing:
            raise ValueError(f"ids not in split {split!r}: {missing[:5]}")
        index = [pos[k] for k in ids]
    else:
        index = list(range(len(ds) if n is None else min(int(n), len(ds))))
    ims, out_ids, sizes = [], [], []
    for i in index:
        with Image.open(ds.image_path(i)) as im:
            ims.append(im.convert("RGB"))
            sizes.append(im.size)
        out_ids.append(ds.ids[i])
    x = torch.stack([transform(im) for im in ims]) if ims else torch.empty(0)
    labels = np.asarray(ds.labels)[index] if getattr(ds, "labels", None) is not None else None
    bias = read_bias(root)
    bias = bias[bias["image_id"].isin(out_ids)]
    objects, tags = [], []
    for iid, wh in zip(out_ids, sizes):
        rows = bias[bias["image_id"] == iid]
        objs = [(r["class"], tuple(box_map([r["xmin"], r["ymin"], r["xmax"], r["ymax"]], wh)[0]))
                for _, r in rows.iterrows()]
        objects.append(objs)
        tb = box_map(tag_box(*wh), wh)[0]
        has_tag = bool(len(rows)) and int(rows["tag"].iloc[0]) == 1
        tags.append((tuple(tb), has_tag))
    return {"x": x, "labels": labels, "ids": out_ids, "classes": list(ds.classes),
            "objects": objects, "tag_box": [tb for tb, _ in tags], "tagged": [h for _, h in tags]}


def combine(attrs: Mapping[str, Any] | None = None, **parts: xr.Dataset) -> xr.Dataset:
    """One Dataset from several experiments: every variable, dim and coordinate of part
    ``name`` is prefixed ``name_`` (so ``image`` of two experiments cannot clash); each part's
    attrs are kept as JSON under ``name_attrs``."""
    out = xr.Dataset()
    merged: dict[str, Any] = dict(attrs or {})
    for name, ds in parts.items():
        ren = {k: f"{name}_{k}" for k in [*ds.data_vars, *ds.coords, *ds.dims]}
        d = ds.rename(ren)
        d.attrs = {}
        out = xr.merge([out, d], compat="no_conflicts", combine_attrs="drop")
        merged[f"{name}_attrs"] = json.dumps(dict(ds.attrs), default=str)
    out.attrs = merged
    return out
