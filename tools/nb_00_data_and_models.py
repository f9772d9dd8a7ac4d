"""Source of notebooks/00_data_and_models.ipynb (run: .venv/bin/python tools/nb_00_data_and_models.py)."""
from nbbuild import write_notebook

CELLS = [
("md", """
# 00 · Data and models

The bias-zoo scene set that every lrpkit analysis runs on, the biases planted in it, and the
default CNN trained on it the way paper 000 (App. E) trains its DNN: multi-label hinge loss,
4 corner + centre crops with mirroring, centre crop at test.

The scenes carry **known** biases, so later notebooks can check what a model relies on against
the truth: *context* (aeroplane on sky, boat on water, bus and car on road, horse and sheep on
grass), an *artefact* (a copyright tag on most horse images), *colour* (buses are always yellow)
and *texture* (sheep are woolly).
"""),
("params", """
config = "default"      # config name or YAML path (lrpkit.load_config)
results_path = None     # where the runner wants this notebook's xarray results
n_show = 12             # scenes shown in the gallery
"""),
("code", """
%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

import lrpkit
from lrpkit.config import resolve_path
from lrpkit.data import VOCDataset, read_bias
from lrpkit.data.bias import bias_summary
from lrpkit.models import evaluate_map, load_cnn
from lrpkit.results import make_attrs, open_dataset, save_dataset
from lrpkit.viz import show_scenes

cfg = lrpkit.load_config(config)
scenes = resolve_path(cfg, "scenes")
cnn_dir = resolve_path(cfg, "models") / "cnn"
print(f"lrpkit {lrpkit.__version__}; scenes in {scenes}; CNN in {cnn_dir}")
"""),
("md", """
## Sample scenes
Test images with their VOC boxes. Some hold two objects; horses often carry the tag in the
bottom-left corner.
"""),
("code", """
test = VOCDataset(scenes, "test")
print(test)
idx = np.linspace(0, len(test) - 1, min(n_show, len(test))).astype(int)
fig = show_scenes([test[i] for i in idx], ncols=6)
plt.show()
"""),
("md", """
## The planted biases, measured
Rates measured from the sidecar `bias.csv` against the rates the generator plants (± one
binomial standard error). On `test_swapped` the backgrounds are drawn uniformly (context
broken); on `test_untagged` the tags are removed. These two splits let later notebooks measure
how much a model's score rests on context and on the artefact.
"""),
("code", """
bias = bias_summary(scenes)
# rows: statistic; cells: measured (planted)
cells = bias["measured"].to_pandas().T.round(3).astype(str) + " (" + bias["planted"].to_pandas().T.round(2).astype(str) + ")"
display(cells)

fig, ax = plt.subplots(figsize=(9, 3.2))
stats = [s for s in bias.statistic.values if s != "car_hue_uniformity"]
m = bias["measured"].sel(split="test", statistic=stats)
e = bias["stderr"].sel(split="test", statistic=stats)
p = bias["planted"].sel(split="test", statistic=stats)
ax.bar(np.arange(len(stats)), m, yerr=e, color="#4c72b0", label="measured (test)")
ax.scatter(np.arange(len(stats)), p, color="k", marker="_", s=600, zorder=3, label="planted")
ax.set_xticks(np.arange(len(stats)), stats, rotation=20)
ax.set_ylabel("rate"); ax.set_ylim(0, 1.05); ax.legend(frameon=False)
ax.set_title("planted biases in the test split")
plt.show()
"""),
("code", """
df = read_bias(scenes)
tagged = df[(df.split == "test") & (df.tag == 1)].image_id
src = tagged.iloc[0] if len(tagged) else df[df.split == "test"].image_id.iloc[0]
twins = {"test": src, "test_swapped": src.replace("test_", "swapped_"),
         "test_untagged": src.replace("test_", "untagged_")}
fig = show_scenes([VOCDataset(scenes, s)[VOCDataset(scenes, s).ids.index(i)] for s, i in twins.items()],
                  titles=list(twins), ncols=3)
plt.suptitle("one test image and its two counterfactual twins", y=1.02)
plt.show()
"""),
("md", """
## Training the CNN
Multi-label hinge loss per epoch and validation mAP. Checkpoints were kept along the way
(`cnn_epoch*.pt`) so later notebooks can relate heatmap quality to training progress
(paper 002, Fig. 7).
"""),
("code", """
hist = open_dataset(cnn_dir / "history.nc")
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
a.plot(hist.epoch, hist.train_loss, "o-"); a.set_xlabel("epoch"); a.set_ylabel("train hinge loss")
b.plot(hist.epoch, hist.val_map, "o-", label="mean")
for c in hist["class"].values:
    b.plot(hist.epoch, hist.val_ap.sel({"class": c}), lw=0.8, alpha=0.6, label=c)
b.set_xlabel("epoch"); b.set_ylabel("validation AP"); b.legend(fontsize=7, ncol=2, frameon=False)
plt.tight_layout(); plt.show()
print(f"training time: {float(hist.time_s[-1]):.0f} s for {int(hist.epoch[-1])} epochs")
"""),
("md", """
## Average precision per class (the layout of Table 1 in paper 000)
AP on the test split and on its two counterfactual twins. A drop on `test_swapped` measures
how much the CNN leans on context; a drop for *horse* on `test_untagged` measures how much it
leans on the copyright tag.
"""),
("code", """
cnn = load_cnn(cnn_dir / "cnn.pt")
splits = ["test", "test_swapped", "test_untagged"]
aps = xr.concat([evaluate_map(cnn, scenes, s)["ap"] for s in splits], dim="split").assign_coords(split=splits)
ap_table = aps.to_pandas()
ap_table["mean"] = ap_table.mean(axis=1)
display(ap_table.style.format("{:.3f}").background_gradient(cmap="RdYlGn", vmin=0.5, vmax=1.0, axis=None))
m = ap_table["mean"]
print(f"mAP {m['test']:.3f} on test, {m['test_swapped']:.3f} with context broken "
      f"({m['test_swapped'] - m['test']:+.3f}); horse AP {ap_table.loc['test', 'horse']:.3f} -> "
      f"{ap_table.loc['test_untagged', 'horse']:.3f} without tags")
"""),
("code", """
results = xr.Dataset(
    {"bias_measured": bias["measured"], "bias_planted": bias["planted"], "bias_stderr": bias["stderr"],
     # AP over the test split and its twins: a dim of its own (the bias rows cover all splits)
     "cnn_ap": aps.rename(split="eval_split"), "cnn_map": aps.mean("class").rename(split="eval_split"),
     "train_loss": hist["train_loss"], "val_map": hist["val_map"]},
    attrs=make_attrs(cfg, notebook="00_data_and_models"))
if results_path:
    save_dataset(results, results_path)
results
"""),
]

if __name__ == "__main__":
    write_notebook("notebooks/00_data_and_models.ipynb", CELLS)
