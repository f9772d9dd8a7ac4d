"""Source of notebooks/01_fv_validation.ipynb and 03_shallow_vs_deep.ipynb.

Run: .venv/bin/python tools/nb_01_03_fisher.py [01] [03]
"""
import sys

from nbbuild import write_notebook

PARAMS = ("params", 'config = "default"\nresults_path = None')

SETUP = r'''
import numpy as np
import pandas as pd
import xarray as xr
import torch
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
%matplotlib inline

import lrpkit
from lrpkit.config import load_config, resolve_path
from lrpkit.data import VOCDataset, read_bias
from lrpkit.data import transforms as T
from lrpkit.models import load_cnn, evaluate_map
from lrpkit.fisher import load_fisher
from lrpkit.results import make_attrs, save_dataset

cfg = load_config(config)
ev = cfg.get("evaluation") or {}
scenes = resolve_path(cfg, "scenes")
models = resolve_path(cfg, "models")

cnn = load_cnn(models / "cnn" / "cnn.pt")
fv = load_fisher(models / "fisher" / "fv.joblib")
classes = list(fv.class_names_)
assert list(cnn.classes) == classes, (cnn.classes, classes)
plt.rcParams.update({"figure.dpi": 90, "axes.titlesize": 10, "axes.labelsize": 9,
                     "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8})
'''

# ============================================================================================
# 01: FV validation
# ============================================================================================
NB01 = [
    ("md", r'''
# 01 · Fisher-vector model: accuracy and validation of its heatmaps

Paper 000 (Lapuschkin et al., CVPR 2016) compares a **Fisher-vector (FV) classifier** (dense SIFT →
PCA → GMM → improved FV → linear SVMs) with a **deep network** and explains both with LRP. Before
reading FV heatmaps we check two things, on lrpkit's bias-zoo scenes:

1. **Accuracy** (paper Table 1): per-class average precision of both models on the test split, and
   on the two counterfactual splits that break a planted bias — `test_swapped` (background drawn at
   random: the *context* bias is gone) and `test_untagged` (the copyright tag removed: the *artefact*
   bias of class horse is gone).
2. **Do FV heatmaps point at what the FV model uses?** Local-feature resampling (paper App. D,
   Algorithm 1, Fig. 7): local features are replaced by draws from the model's GMM, most relevant
   first, and the drop of the class score is compared with a random order.
'''),
    PARAMS,
    ("code", SETUP + r'''
n_ap = ev.get("ap_images", 150)        # test images (and their twins) in the AP table; None: all
n_img = int(ev.get("resampling_images", 42))
n_rep = int(ev.get("resampling_repeats", 5))
batch = int(ev.get("resampling_batch", 20))
n_steps = int(ev.get("resampling_steps", 50))
display(Markdown(f"Config `{cfg['_source']}` · scenes `{scenes}` · models `{models}` · "
                 f"classes: {', '.join(classes)}"))
'''),
    ("md", r'''
## Table 1 · Average precision per class

Rows: model and test split; columns: classes (AP in %, non-interpolated area under the
precision-recall curve; CNN on one centre crop as in paper App. E, FV on the whole image).
What the planted biases predict: a model that leans on **context** loses AP on `test_swapped`
(most for classes with a distinctive background: aeroplane/sky, boat/water); a model that leans on
the **copyright tag** loses AP for **horse** on `test_untagged`. Test-set accuracy alone cannot tell
these strategies apart — the counterfactual rows and the heatmaps below can.
'''),
    ("code", r'''
from sklearn.metrics import average_precision_score


def ap_per_class(scores, labels, ignore):
    out = []
    for c in range(labels.shape[1]):
        keep = ~ignore[:, c]
        y = labels[keep, c] > 0.5
        out.append(average_precision_score(y, scores[keep, c]) if 0 < y.sum() < len(y) else np.nan)
    return np.array(out)


def cnn_scores(images, batch=128):
    size, crop = int(cnn.meta.get("size", T.DEFAULT_SIZE)), int(cnn.input_size)
    with torch.no_grad():
        return np.concatenate([cnn(T.to_tensor_batch(images[s:s + batch], size, crop)).numpy()
                               for s in range(0, len(images), batch)])


# The same test images in every split: a test image and its two twins (same index).
splits = ["test", "test_swapped", "test_untagged"]
prefix = {"test": "test_", "test_swapped": "swapped_", "test_untagged": "untagged_"}
full = {}
for split in splits:
    try:
        full[split] = VOCDataset(scenes, split, classes=classes)
    except FileNotFoundError:
        print(f"no split {split!r} in {scenes}: its rows stay empty")
n_test = len(full["test"])
keep = np.arange(n_test) if n_ap is None else np.sort(
    np.random.default_rng(cfg.get("seed", 0)).permutation(n_test)[:int(n_ap)])
suffix = [full["test"].ids[i].split("_", 1)[-1] for i in keep]
images, fv_scores, labels_, ignore_ = {}, {}, {}, {}
ap = np.full((len(splits), 2, len(classes)), np.nan)
for s, split in enumerate(splits):
    if split not in full:
        continue
    ds = full[split]
    pos = {name: k for k, name in enumerate(ds.ids)}
    rows = list(keep) if split == "test" else [pos.get(prefix[split] + x) for x in suffix]
    if any(r is None for r in rows):
        print(f"split {split!r} has no twin for some test images: its rows stay empty")
        continue
    images[split] = [ds[i][0] for i in rows]
    labels_[split], ignore_[split] = ds.labels[rows], ds.ignore[rows]
    if split == "test_untagged":  # untagged twins of untagged images are the same image: reuse
        same = [np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images["test"], images[split])]
        sc = fv_scores["test"].copy()
        diff = [i for i, eq in enumerate(same) if not eq]
        if diff:
            sc[diff] = fv.decision_function([images[split][i] for i in diff])
    else:
        sc = np.asarray(fv.decision_function(images[split]))
    fv_scores[split] = sc
    ap[s, 0] = ap_per_class(sc, labels_[split], ignore_[split])
    ap[s, 1] = ap_per_class(cnn_scores(images[split]), labels_[split], ignore_[split])

ap_da = xr.DataArray(ap, dims=("split", "model", "class"),
                     coords={"split": splits, "model": ["FV", "CNN"], "class": classes})
table = ap_da.to_dataframe("AP").AP.unstack("class")[classes] * 100
table["mAP"] = table.mean(axis=1)
table = table.dropna(how="all")
display(Markdown(f"{len(keep)} of {n_test} test images and their twins "
                 f"(`evaluation.ap_images` = {n_ap}; FV encoding costs ~0.2 s per image)."))
display(table.style.format("{:.1f}").set_caption("Average precision (%) per class"))
'''),
    ("code", r'''
fig, ax = plt.subplots(figsize=(9, 3.2))
x = np.arange(len(classes) + 1)
w = 0.13
for k, (split, model) in enumerate([(s, m) for m in ("FV", "CNN") for s in splits]):
    if (split, model) not in table.index:
        continue
    vals = table.loc[(split, model)].values
    ax.bar(x + (k - 2.5) * w, vals, w, label=f"{model} · {split}",
           color=plt.cm.Blues(0.45 + 0.2 * splits.index(split)) if model == "FV"
           else plt.cm.Oranges(0.45 + 0.2 * splits.index(split)))
ax.set_xticks(x, classes + ["mAP"])
ax.set_ylabel("AP (%)")
ax.set_ylim(0, 105)
ax.set_title("AP per class: FV (blue) and CNN (orange) on test, test_swapped, test_untagged (light to dark)")
ax.legend(ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
plt.tight_layout()
plt.show()
'''),
    ("md", r'''
## Fig. 7 · Local-feature resampling (paper App. D, Algorithm 1)

For **true-positive** predictions of the FV model (a class that is present and scored `f(x) > 0`,
as in the paper), the local features of the image are ranked by their FV-LRP relevance `R(2)_l` —
for each decomposition of the mapping layer: ε-rule with ε = 1 and ε = 100 (eq. 22), absolute-value
rule (eq. 23), plain rule (eq. 20) — and replaced in batches by samples from the FV model's own GMM.
The raw Fisher vector is updated incrementally and re-scored after every batch.

* **A** (eq. 25) = mean over steps of `f(x) − f(x(i))`: the area between the unperturbed score and
  the trace. Larger = the ordering found the features the decision rests on.
* **V** = fraction of traces whose prediction switched sign at some step; grey bars: how many
  traces switched at each step.

A heatmap that explains the model should beat the **random order** (dashed) clearly. The paper
found ε = 100 best (its Fig. 7); with the plain rule, near-cancelling mapping sums blow up single
features' relevances, which can scramble the order.
'''),
    ("code", r'''
from lrpkit.evaluate import resampling_experiment

ds_test = full["test"]
labels, scores = labels_["test"], fv_scores["test"]
rng = np.random.default_rng(cfg.get("seed", 0))
pools = [list(rng.permutation(np.flatnonzero((labels[:, c] > 0) & (scores[:, c] > 0)))) for c in range(len(classes))]
pairs = []
while len(pairs) < n_img and any(pools):
    for c, pool in enumerate(pools):
        if pool and len(pairs) < n_img:
            pairs.append((int(pool.pop(0)), c))
if not pairs:   # no true positive at all (an untrained model): use the best-scored positives
    print("no true-positive FV predictions: using the highest-scored positive images instead")
    pairs = [(int(np.argmax(np.where(labels[:, c] > 0, scores[:, c], -np.inf))), c)
             for c in range(len(classes)) if (labels[:, c] > 0).any()][:n_img]
tp_images = [images["test"][i] for i, _ in pairs]
targets = [c for _, c in pairs]
ids = [f"test_{suffix[i]}:{classes[c]}" for i, c in pairs]
n_feat = fv.encoder_.local_features(tp_images[0])[0].shape[0]
display(Markdown(f"{len(pairs)} true-positive (image, class) pairs, {n_rep} repeats, "
                 f"{n_steps} steps of {batch} features (about {n_feat} local features per image: "
                 f"{100 * n_steps * batch / n_feat:.0f} % replaced at the end; the paper replaced "
                 f"10,000 of ~69,000 in 100 steps of 100)."))
res = resampling_experiment(fv, tp_images, targets, batch_size=batch, n_steps=n_steps, repeats=n_rep,
                            seed=int(cfg.get("seed", 0)), image_ids=ids, config=cfg)
'''),
    ("code", r'''
rules = [r for r in res.rule.values if r != "random"]
mean = res.score.mean(("image", "repeat"))
steps = res.step.values
fig, axes = plt.subplots(1, len(rules), figsize=(3.4 * len(rules), 3.7), sharey=True)
for ax, r in zip(np.atleast_1d(axes), rules):
    bars = ax.twinx()
    bars.bar(steps, res.switch_count.sel(rule=r), width=1.0, color="0.85", zorder=0)
    bars.set_ylim(0, max(1, int(res.switch_count.max())) * 3)
    bars.set_yticks([])
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(steps, mean.sel(rule=r), color="C3", lw=2, label="ordered by relevance")
    ax.plot(steps, mean.sel(rule="random"), "--", color="0.3", label="random order")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title(f"{r}: A = {float(res.A.sel(rule=r)):.3f}, V = {float(res.V.sel(rule=r)):.2f}\n"
                 f"(random: A = {float(res.A.sel(rule='random')):.3f}, V = {float(res.V.sel(rule='random')):.2f})")
    ax.set_xlabel(f"step i (batches of {batch} features)")
np.atleast_1d(axes)[0].legend(loc="lower left")
np.atleast_1d(axes)[0].set_ylabel("mean score f(x(i)) of the explained class")
fig.suptitle(f"Local-feature resampling, {res.sizes['image']} true positives × {res.sizes['repeat']} repeats "
             "(grey bars: traces switching sign at each step)", fontsize=10)
plt.tight_layout()
plt.show()

summary = pd.DataFrame({"A (eq. 25)": res.A.to_series(), "V": res.V.to_series(),
                        "A / A(random)": (res.A / res.A.sel(rule="random")).to_series(),
                        "mean switch step": res.switch_step.where(res.switch_step >= 0)
                        .mean(("image", "repeat")).to_series()})
display(summary.style.format("{:.3f}").set_caption("Resampling summary per ordering"))
best = summary["A (eq. 25)"].drop("random").idxmax()
display(Markdown(f"Best ordering by A: **{best}** (A = {summary.loc[best, 'A (eq. 25)']:.3f} vs "
                 f"{summary.loc['random', 'A (eq. 25)']:.3f} for random)."))
'''),
    ("md", r'''
Per class: A for each ordering (mean over that class's traces). A class whose evidence sits in a
few features (e.g. the horse tag) should show a large gap to random.
'''),
    ("code", r'''
per_class = res.A_trace.mean("repeat").groupby(res.target_class).mean("image")
display((per_class.to_pandas().T).style.format("{:.3f}").set_caption("A per class (rows: ordering)"))
'''),
    ("code", r'''
out = res.copy()
out["ap"] = ap_da
out["ap"].attrs["description"] = "average precision per class; FV on the whole image, CNN on the centre crop"
out.attrs.update(make_attrs(cfg, notebook="01_fv_validation", ap_images=len(keep), resampling_images=n_img,
                            resampling_repeats=n_rep, resampling_batch=batch, resampling_steps=n_steps))
if results_path:
    save_dataset(out, results_path)
out
'''),
]

# ============================================================================================
# 03: shallow vs deep
# ============================================================================================
NB03 = [
    ("md", r'''
# 03 · Shallow vs deep: what do the FV model and the CNN look at?

Paper 000 Sec. 6.3-6.5 (Fig. 4-6) and paper 001 Fig. 1, on the bias-zoo scenes. Both models are
explained with LRP for the class in question: the **FV model** with the ε-rule (ε = 100, paper 000
App. C) on the whole image, the **CNN** with the composite of paper 001 (α = 2, β = 1 on convolutions,
ε on dense layers) on its 96 × 96 centre crop. Heatmaps are shown on each model's own input: red =
evidence for the class, blue = against.

The scenes carry planted biases, so we know what a shortcut would look like:
**context** (the background matches the first object's class 88 % of the time: aeroplane–sky,
boat–water, bus/car–road, horse/sheep–grass), an **artefact** (a "© lrp" copyright tag in the
bottom-left corner of 70 % of horse images, 3 % of the others), **colour** (buses are always yellow)
and **texture** (sheep wear wool).
'''),
    PARAMS,
    ("code", SETUP + r'''
from lrpkit.evaluate import box_share, box_to_crop, outside_inside_ratio
from lrpkit.fisher import FisherLRP
from lrpkit import viz

n_avg = int(ev.get("average_heatmap_images", 20))
n_tag = int(ev.get("tag_images", 12))
cutoff = ev.get("cnn_cutoff", "features.6")
size = int(cnn.meta.get("size", T.DEFAULT_SIZE))
crop = int(cnn.meta.get("input_size", cnn.input_size))
test = VOCDataset(scenes, "test", classes=classes)
bias = read_bias(scenes)
FV_KW = dict(rule="epsilon", epsilon=100.0, pca_epsilon=0.5)
CNN_KW = dict(composite=(cfg.get("lrp") or {}).get("composite") or "alpha2_beta1")


fv_lrp = FisherLRP(fv, **FV_KW)   # = lrpkit.explain(fv, x, c, method="fv_lrp", ...), one image at a time


def fv_map(img, c, resolution="feature"):
    """FV-LRP pixel map (H, W) for class c, and the FV score f(x)."""
    r = fv_lrp.relevance(img, int(c), resolution=resolution)
    return r.pixel_map(resolution), r.fx


def cnn_maps(imgs, c, **kw):
    """CNN LRP maps (N, crop, crop) for class c (one, or one per image), the crops in [0, 1]
    (N, crop, crop, 3) and the CNN scores (N,)."""
    x = T.to_tensor_batch(list(imgs), size, crop)
    t = [int(v) for v in np.broadcast_to(c, (len(imgs),))]
    R = lrpkit.explain(cnn, x, t, method="lrp", **{**CNN_KW, **kw})
    with torch.no_grad():
        f = cnn(x)[np.arange(len(t)), t].numpy()
    return R.sum(1).detach().numpy(), T.denormalize(x).permute(0, 2, 3, 1).numpy(), f


def heat(ax, R, title=None):
    """Relevance map in lrpkit's colour map (red > 0 > blue), range at the 99.5th percentile of |R|."""
    v = viz.symmetric_limit(R, 99.5)
    ax.imshow(R, cmap=viz.lrp_cmap(), vmin=-v, vmax=v, interpolation="nearest")
    ax.set_xticks([]); ax.set_yticks([])
    if title:
        ax.set_title(title)


def show(ax, im, title=None):
    ax.imshow(im)
    ax.set_xticks([]); ax.set_yticks([])
    if title:
        ax.set_title(title)


def rect(ax, box, color="lime"):
    x0, y0, x1, y1 = box
    ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=color, lw=1.2))


objs = bias[bias.split == "test"]
tag_margin = int(ev.get("tag_margin", 8))
'''),
    ("md", r'''
## Heatmaps for every class (cf. paper 000 Fig. 4-5, top)

One test image per class (a single-object image both models classify correctly where there is one).
Columns: the image, the FV heatmap, the CNN's input crop and the CNN heatmap, each for the row's class.
Green boxes: the object's annotation.
'''),
    ("code", r'''
one = objs.groupby("image_id").filter(lambda g: len(g) == 1)
examples = {}
for r, c in enumerate(classes):
    cand = [test.ids.index(i) for i in one[one["class"] == c].image_id if i in test.ids][:8]
    if not cand:
        cand = [int(np.argmax(test.labels[:, r]))]
    with torch.no_grad():
        f_c = cnn(T.to_tensor_batch([test[i][0] for i in cand], size, crop))[:, r].numpy()
    examples[c] = cand[int(np.argmax(f_c > 0))]   # first candidate the CNN gets right, else the first
items = [test[examples[c]] for c in classes]
Rcs, xcs, fcs = cnn_maps([im for im, _ in items], list(range(len(classes))))
fig, axes = plt.subplots(len(classes), 4, figsize=(9.5, 2.2 * len(classes)))
for r, (c, (img, tgt)) in enumerate(zip(classes, items)):
    Rf, ff = fv_map(img, r)
    show(axes[r, 0], img, f"{c}: {tgt['id']}")
    heat(axes[r, 1], Rf, f"FV, f(x) = {ff:+.2f}")
    show(axes[r, 2], xcs[r], "CNN input (centre crop)")
    heat(axes[r, 3], Rcs[r], f"CNN, f(x) = {fcs[r]:+.2f}")
    for b, n in zip(tgt["boxes"], tgt["names"]):
        if n == c:
            rect(axes[r, 0], b); rect(axes[r, 1], b)
            bc = box_to_crop(b, tgt["size"], size, crop)[0]
            rect(axes[r, 2], bc); rect(axes[r, 3], bc)
fig.suptitle("LRP heatmaps per class: FV (ε = 100) vs CNN (α2β1); red supports the class", fontsize=10)
plt.tight_layout()
plt.show()
'''),
    ("md", r'''
## Average heatmaps per class over landscape images (paper 000 Fig. 5, bottom)

Each heatmap is divided by its largest absolute value, then averaged over up to `n_avg` landscape
test images that contain the class (each model explained for that class). What the planted context
bias predicts for a model that uses it: heat at the **top** for aeroplane (sky), in the **bottom
half** for boat (water), bus/car (road) and horse/sheep (grass) — spread over the background rather
than concentrated where objects usually are; for horse also a hot **bottom-left corner** (the tag).
The CNN's input is the image scaled to its longest side `S`, edge-padded to `S × S` and centre-cropped
(paper 000 App. E), so for landscape images the top and bottom rows of its maps are padding.
FV maps of images of another size are resized to the first map's size before averaging.
'''),
    ("code", r'''
from skimage.transform import resize

land = objs[objs.orientation == "landscape"]
avg_fv = None                                          # (classes, H, W) of the first FV map
avg_cnn = np.zeros((len(classes), crop, crop))
mu = np.full((len(classes), 2, n_avg), np.nan)         # outside-inside ratio per image (eq. 11)
n_used = np.zeros(len(classes), int)
for r, c in enumerate(classes):
    ids = list(dict.fromkeys(land[land["class"] == c].image_id))
    idx = [test.ids.index(i) for i in ids if i in test.ids][:n_avg]
    n_used[r] = len(idx)
    if not idx:
        continue
    items = [test[i] for i in idx]
    Rc = cnn_maps([im for im, _ in items], r)[0]
    for k, (img, tgt) in enumerate(items):
        Rf = fv_map(img, r)[0]
        boxes = np.array([b for b, n in zip(tgt["boxes"], tgt["names"]) if n == c])
        mu[r, 0, k] = outside_inside_ratio(Rf, boxes)
        if avg_fv is None:
            avg_fv = np.zeros((len(classes),) + Rf.shape)
        if Rf.shape != avg_fv.shape[1:]:
            Rf = resize(Rf, avg_fv.shape[1:], order=1, anti_aliasing=True)
        avg_fv[r] += Rf / (np.abs(Rf).max() or 1.0)
        avg_cnn[r] += Rc[k] / (np.abs(Rc[k]).max() or 1.0)
        mu[r, 1, k] = outside_inside_ratio(Rc[k], box_to_crop(boxes, tgt["size"], size, crop))
    avg_fv[r] /= len(idx)
    avg_cnn[r] /= len(idx)
if avg_fv is None:                                     # no landscape image of any class
    avg_fv = np.zeros((len(classes), 1, 1))

fig, axes = plt.subplots(2, len(classes), figsize=(2.1 * len(classes), 4.0))
for r, c in enumerate(classes):
    heat(axes[0, r], avg_fv[r], f"{c} (n={n_used[r]})")
    heat(axes[1, r], avg_cnn[r])
axes[0, 0].set_ylabel("FV", fontsize=10)
axes[1, 0].set_ylabel("CNN", fontsize=10)
fig.suptitle("Average heatmaps per class over landscape test images (each map scaled to max |R| = 1)",
             fontsize=10)
plt.tight_layout()
plt.show()
'''),
    ("md", r'''
### Context use per class: outside-inside relevance ratio (paper 000 eq. 11, Fig. 6)

µ = mean positive relevance per pixel *outside* the class's boxes / mean *inside*, per image, from
the same heatmaps (median over images). µ > 1: the evidence is denser in the context than on the
object. The planted context bias predicts high µ for the FV model on classes with distinctive
backgrounds; note µ depends on the box's share of the image and on the CNN crop's padding, so
compare the two models class by class rather than against 1.
'''),
    ("code", r'''
mu_da = xr.DataArray(mu, dims=("class", "model", "sample"),
                     coords={"class": classes, "model": ["FV", "CNN"]})
med = mu_da.where(np.isfinite(mu_da)).median("sample")
fig, ax = plt.subplots(figsize=(7, 2.8))
xs = np.arange(len(classes))
ax.bar(xs - 0.2, med.sel(model="FV"), 0.4, label="FV", color="C0")
ax.bar(xs + 0.2, med.sel(model="CNN"), 0.4, label="CNN", color="C1")
ax.axhline(1, color="k", lw=0.5)
ax.set_xticks(xs, classes)
ax.set_ylabel("median µ (outside / inside)")
ax.set_title("Outside-inside relevance ratio per class (eq. 11); higher = more context")
ax.legend()
plt.tight_layout()
plt.show()
'''),
    ("md", r'''
## The horse tag (paper 000 Fig. 5, right)

In the paper the FV model put almost all relevance for "horse" on a copyright tag in the corner;
removing the tag changed the FV heatmap completely but not the DNN's. Here the tag is planted, and
`test_untagged` holds each test image again without it. For tagged horse test images we measure the
**share of positive relevance inside the tag box** for both models on the tagged image and its
untagged twin, and the horse score. A uniform heatmap would put about the tag's share of the area
there. FV relevance is spread over each local feature's receptive field (16-32 pixels square), so
heat caused by the tag also lands around it: we report the share in the box grown by
`tag_margin` pixels too. (The CNN's centre crop cuts off the left ~11 image pixels, about 40 % of
the tag; its box is mapped into the crop and clipped.)
'''),
    ("code", r'''
untagged = VOCDataset(scenes, "test_untagged", classes=classes)
h = classes.index("horse")
tagged = objs[(objs["class"] == "horse") & (objs.tag == 1)].drop_duplicates("image_id")
tagged = tagged[tagged.image_id.isin(test.ids)].head(n_tag)
cases, share, score, area = [], [], [], []
for _, row in tagged.iterrows():
    twin = "untagged_" + row.image_id.split("_", 1)[1]
    if twin not in untagged.ids:
        continue
    tag = (int(row.tag_xmin), int(row.tag_ymin), int(row.tag_xmax), int(row.tag_ymax))
    big = (tag[0] - tag_margin, tag[1] - tag_margin, tag[2] + tag_margin, tag[3] + tag_margin)
    pair = [test[test.ids.index(row.image_id)][0], untagged[untagged.ids.index(twin)][0]]
    tag_c, big_c = box_to_crop([tag, big], pair[0].size, size, crop)
    Rc, _, f_cnn = cnn_maps(pair, h)
    s_, f_ = np.zeros((2, 2, 2)), np.zeros((2, 2))          # (model, version, region)
    for k, img in enumerate(pair):
        Rf, f_[0, k] = fv_map(img, h)
        s_[0, k] = box_share(Rf, tag), box_share(Rf, big)
        s_[1, k] = box_share(Rc[k], tag_c), box_share(Rc[k], big_c)
    f_[1] = f_cnn
    cases.append(row.image_id); share.append(s_); score.append(f_)
    area.append([(tag[2] - tag[0]) * (tag[3] - tag[1]) / (pair[0].size[0] * pair[0].size[1]),
                 (tag_c[2] - tag_c[0]) * (tag_c[3] - tag_c[1]) / crop ** 2])
tag_ds = xr.Dataset({"tag_share": (("case", "model", "version", "region"), np.array(share).reshape(-1, 2, 2, 2)),
                     "horse_score": (("case", "model", "version"), np.array(score).reshape(-1, 2, 2)),
                     "tag_area_share": (("case", "model"), np.array(area).reshape(-1, 2))},
                    coords={"case": cases, "model": ["FV", "CNN"], "version": ["test", "test_untagged"],
                            "region": ["tag box", f"tag box + {tag_margin} px"]})
sh = tag_ds.tag_share.mean("case")
tab = pd.DataFrame({
    "in tag box, test": sh.sel(version="test", region="tag box").to_series(),
    "in tag box, untagged": sh.sel(version="test_untagged", region="tag box").to_series(),
    f"box + {tag_margin} px, test": sh.sel(version="test").isel(region=1).to_series(),
    f"box + {tag_margin} px, untagged": sh.sel(version="test_untagged").isel(region=1).to_series(),
    "tag's share of area": tag_ds.tag_area_share.mean("case").to_series(),
    "horse score, test": tag_ds.horse_score.sel(version="test").mean("case").to_series(),
    "horse score, untagged": tag_ds.horse_score.sel(version="test_untagged").mean("case").to_series()})
display(Markdown(f"{len(cases)} tagged horse test images (means; shares of positive relevance, 0-1):"))
display(tab.style.format("{:.3f}"))
'''),
    ("code", r'''
if cases:
    row = tagged[tagged.image_id == cases[0]].iloc[0]
    twin = "untagged_" + row.image_id.split("_", 1)[1]
    pair = [test[test.ids.index(row.image_id)][0], untagged[untagged.ids.index(twin)][0]]
    tag = (int(row.tag_xmin), int(row.tag_ymin), int(row.tag_xmax), int(row.tag_ymax))
    tag_c = box_to_crop(tag, pair[0].size, size, crop)[0]
    Rc, xc, fc = cnn_maps(pair, h)
    fig, axes = plt.subplots(2, 4, figsize=(9.5, 4.6))
    for k, (img, name) in enumerate(zip(pair, ["with tag (test)", "tag removed (test_untagged)"])):
        Rf, ff = fv_map(img, h)
        show(axes[k, 0], img, name)
        heat(axes[k, 1], Rf, f"FV f(x)={ff:+.2f}: {100 * box_share(Rf, tag):.0f} % of R+ in tag")
        rect(axes[k, 1], (tag[0] - tag_margin, tag[1] - tag_margin, tag[2] + tag_margin, tag[3] + tag_margin), "orange")
        show(axes[k, 2], xc[k], "CNN input")
        heat(axes[k, 3], Rc[k], f"CNN f(x)={fc[k]:+.2f}: {100 * box_share(Rc[k], tag_c):.0f} % in tag")
        for ax in axes[k, :2]:
            rect(ax, tag, "red")
        for ax in axes[k, 2:]:
            rect(ax, tag_c, "red")
    fig.suptitle(f"Class horse on {row.image_id}: FV and CNN with and without the tag (red: tag box, "
                 f"orange: + {tag_margin} px)",
                 fontsize=10)
    plt.tight_layout()
    plt.show()

    fig, ax = plt.subplots(figsize=(5, 2.8))
    for m, model in enumerate(["FV", "CNN"]):
        vals = tag_ds.tag_share.sel(model=model, region="tag box")
        xs = np.arange(2) + 0.38 * m - 0.19
        ax.bar(xs, vals.mean("case") * 100, 0.38,
               yerr=vals.std("case") * 100 / np.sqrt(max(1, len(cases))), label=model, color=f"C{m}")
        ax.hlines([float(tag_ds.tag_area_share.sel(model=model).mean()) * 100] * 2, xs - 0.19, xs + 0.19,
                  color="k", ls=":", lw=1.2, label="tag's share of the area" if m == 0 else None)
    ax.set_xticks([0, 1], ["with tag", "tag removed"])
    ax.set_ylabel("% of positive relevance in tag box")
    ax.set_title("Horse heatmaps: relevance on the tag (mean ± s.e.m.)")
    ax.legend()
    plt.tight_layout()
    plt.show()
'''),
    ("md", r'''
## Heatmap resolution (paper 001 Fig. 1)

Where relevance stops following the model's mappings sets a heatmap's grain. The FV model's
relevance is usually spread uniformly over each local feature's receptive field (**feature**
resolution, paper 000 eq. 21); following it further into the 16 spatial bins of each SIFT descriptor
gives the 16× finer **bin** resolution of paper 001. For that the relevance of each PCA coordinate
goes back to the 128 SIFT dimensions with a z-rule whose denominator is stabilised, as paper 001
requires: `l_r + eps_r sgn(l_r)` with `eps_r` = `pca_epsilon` (0.5) times the coordinate's standard
deviation, the absorbed share spread over the descriptor so the map still sums to the feature
relevances; without it coordinates near 0 turn the map into cancelling ± noise. Conversely the
CNN's pixel-exact heatmap coarsens when relevance is spread uniformly below a **cut-off** layer
(flat rule there and below).
'''),
    ("code", r'''
if cases:
    r_img, r_cls, r_name = pair[0], h, f"horse, {cases[0]}"
else:
    r_cls = classes.index("sheep") if "sheep" in classes else 0
    r_img, r_name = test[examples[classes[r_cls]]][0], classes[r_cls]
Rc0, xc, _ = cnn_maps([r_img], r_cls)
Rc1 = cnn_maps([r_img], r_cls, cutoff=cutoff)[0]
panels = [("FV, feature resolution", fv_map(r_img, r_cls, "feature")[0]),
          ("FV, bin resolution", fv_map(r_img, r_cls, "bin")[0]),
          ("CNN, no cut-off", Rc0[0]), (f"CNN, cut-off at {cutoff}", Rc1[0])]
fig, axes = plt.subplots(1, 6, figsize=(14, 2.6))
show(axes[0], r_img, r_name)
show(axes[3], xc[0], "CNN input")
for ax, (t, R) in zip([axes[1], axes[2], axes[4], axes[5]], panels):
    heat(ax, R, t)
fig.suptitle(f"Resolution of heatmaps for class {classes[r_cls]}: FV (left) and CNN (right); "
             "colour range at the 99.5th percentile of |R|", fontsize=10)
plt.tight_layout()
plt.show()
'''),
    ("code", r'''
out = xr.Dataset(
    {"avg_heatmap_fv": (("class", "fv_y", "fv_x"), avg_fv),
     "avg_heatmap_cnn": (("class", "cnn_y", "cnn_x"), avg_cnn),
     "n_average": (("class",), n_used),
     "context_ratio": (("class", "model", "sample"), mu),
     "context_ratio_median": med},
    coords={"class": classes, "model": ["FV", "CNN"]})
out = xr.merge([out, tag_ds], combine_attrs="drop")
out.attrs = make_attrs(cfg, notebook="03_shallow_vs_deep", fv_lrp=FV_KW, cnn_lrp=CNN_KW,
                       cnn_cutoff=cutoff, average_heatmap_images=n_avg, tag_images=n_tag,
                       tag_margin=tag_margin)
if results_path:
    save_dataset(out, results_path)
out
'''),
]

if __name__ == "__main__":
    which = sys.argv[1:] or ["01", "03"]
    if "01" in which:
        write_notebook("notebooks/01_fv_validation.ipynb", NB01)
    if "03" in which:
        write_notebook("notebooks/03_shallow_vs_deep.ipynb", NB03)
    print("written")
