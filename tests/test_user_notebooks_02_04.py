"""Notebooks 02 (context) and 04 (AOPC) on a user's network and images, not lrpkit's.

A random torchvision ResNet-18 on a small VOC devkit (a state dict; ``tests/userdata.py``) and the
same network as TorchScript on an image-folder tree with a box CSV run through papermill and the
HTML export (:func:`lrpkit.batch.run_notebook`) at smoke scale: the reports render, their results
hold the user's image ids, class names and model, and the sections whose input the data lacks (the
scene set's planted truth, counterfactual twins, an FV model, training checkpoints) say so.  The
scene runs of both notebooks are in ``tests/test_pipeline.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from lrpkit import pipeline, sources
from lrpkit.batch import run_notebook
from lrpkit.config import load_config, project_root
from lrpkit.results import open_dataset
from userdata import CLASSES, SPLITS, write_folder, write_user_project

NB = project_root() / "notebooks"
TEST_IDS = set(SPLITS["test"])


def _run(name: str, cfg: Path, out: Path):
    run = run_notebook(NB / f"{name}.ipynb", out, cfg, timeout=600)
    assert run.ok, run.detail
    assert run.html is not None and run.html.stat().st_size > 10_000
    return run, run.html.read_text(encoding="utf-8"), open_dataset(run.results)


def _skipped(html: str, title: str) -> bool:
    return f"{title}: skipped.</strong> This needs" in html


@pytest.fixture(scope="module")
def voc_project(tmp_path_factory):
    return write_user_project(tmp_path_factory.mktemp("user_voc"))


@pytest.fixture(scope="module")
def folder_project(tmp_path_factory):
    """The ResNet-18 as TorchScript on the image-folder tree (boxes for two test images)."""
    where = tmp_path_factory.mktemp("user_folder")
    path = write_user_project(where, model="torchscript")
    root = write_folder(where)
    raw = yaml.safe_load(path.read_text())
    raw["dataset"] = {"source": "folder", "root": str(root), "split": "test", "train_split": "train",
                      "boxes": str(root / "boxes.csv")}
    raw["evaluation"].update(aopc_images=1, aopc_scale_images=1, aopc_road_images=1)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def context_voc(voc_project):
    return _run("02_context_analysis", voc_project, voc_project.parent.parent / "reports")


@pytest.fixture(scope="module")
def aopc_voc(voc_project):
    return _run("04_aopc_evaluation", voc_project, voc_project.parent.parent / "reports")


def test_context_report_measures_mu_on_the_users_boxes(context_voc):
    _, html, res = context_voc
    assert list(res["class"].values) == list(CLASSES)
    assert list(res.model.values) == ["resnet18"]
    ids = {str(i) for i in np.ravel(res.mu_image_id.values)} - {""}
    # the images that show the class with a box of it; 2009_000104's cat is difficult only
    assert ids == {"2009_000101", "2009_000105", "2009_000106"} and ids <= TEST_IDS
    cat = [str(i) for i in res.mu_image_id.sel({"class": "cat"}).values]
    assert sorted(cat) == ["2009_000101", "2009_000105"]
    mu = res.mu.sel(model="resnet18").values
    assert np.isfinite(mu[res.mu_image_id.values != ""]).all() and (mu[np.isfinite(mu)] > 0).all()
    assert np.isfinite(res.mu_ratio.sel(bound="estimate", mu_class="all").values).all()
    assert "Findings" in html and "not tested" in html
    assert "µ per class" in html


def test_context_report_names_what_it_analysed_and_what_it_skipped(context_voc):
    _, html, res = context_voc
    a = res.attrs
    assert a["dataset_source"] == "voc" and a["dataset_split"] == "test"
    assert [m["model_name"] for m in a["models"]] == ["resnet18"]
    assert a["models"][0]["model_path"].endswith("resnet18_sd.pt")
    for title in ("The FV comparison", "µ against the planted context",
                  "Score and AP on counterfactual twins", "The horse tag"):
        assert _skipped(html, title), title
    assert len(a["skipped_sections"]) == 4          # + the training-checkpoint study
    assert not {"twin_ap", "tag_share", "mu_by_background"} & set(res.data_vars)


def test_aopc_report_ranks_every_method_on_the_users_images(aopc_voc):
    _, html, res = aopc_voc
    ids = [str(i) for i in res.image.values]
    assert len(ids) == 2 and set(ids) <= TEST_IDS
    assert set(str(c) for c in res.target_class.values) <= set(CLASSES)
    assert len(res.heatmap_method) == 9 and res.attrs["methods_left_out"] == []
    assert "random" in res.method.values and np.isfinite(res.aopc_minus_random_morf.values).all()
    assert np.isfinite(res.deletion_auc.values).all() and (res.complexity_png_bytes.values > 0).all()
    assert res.attrs["model_name"] == "resnet18" and res.attrs["dataset_name"] == "VOC2007"
    assert res.attrs["region_size"] == 3            # the paper's 9 px at 227 px, scaled to 64 px
    assert _skipped(html, "FV-LRP on the Fisher-vector model")
    assert _skipped(html, "Fig. 7 · AOPC along training")
    assert not {"fv_aopc", "checkpoint_mAP"} & set(res.data_vars)
    # the images: true positives where at least two qualify, else the predicted class (stated)
    assert res.attrs["n_images"] == 2 and 0 <= res.attrs["n_true_positive"] <= res.attrs["n_scanned"]
    # findings first, generated from intervals; what the user's model cannot test says why
    assert html.index("Findings") < html.index("Heatmaps of every method")
    claims = [str(c) for c in res.finding_claim.values]
    verdicts = dict(zip(claims, (str(v) for v in res.finding_verdict.values)))
    fig7 = [c for c in claims if "Fig. 7" in c]
    assert len(fig7) == 1 and verdicts[fig7[0]] == "not tested"
    assert {"reproduced", "not resolved", "contradicted"} >= {verdicts[c] for c in claims if "Fig. 4" in c}
    assert (res.finding_n.values[[("Fig. 4" in c) for c in claims]] == 2).all()
    ci = res.aopc_minus_random_morf_ci
    assert set(ci.ranked_method.values) == set(res.heatmap_method.values)
    assert (res.aopc_minus_random_morf_ci_n == 2).all()
    assert (ci.sel(bound="low") <= ci.sel(bound="high")).all()


def test_torchscript_model_on_an_image_folder(folder_project):
    out = folder_project.parent.parent / "reports"
    _, html, ctx = _run("02_context_analysis", folder_project, out)
    ids = {str(i) for i in np.ravel(ctx.mu_image_id.values)} - {""}
    assert ids == {"cat/0000", "kiwi/0001"}            # the test images the box CSV names
    assert ctx.attrs["dataset_source"] == "folder"
    assert "gradient_x_input" in html                  # LRP cannot reach TorchScript code
    assert np.isnan(ctx.mu.sel({"class": "dog"}).values).all()

    _, html, res = _run("04_aopc_evaluation", folder_project, out)
    assert set(res.heatmap_method.values) == {"sensitivity l2", "sensitivity linf", "gradient x input"}
    assert set(res.attrs["methods_left_out"]) == {"LRP a2b1", "LRP eps=0.01", "LRP eps=1", "LRP eps=100",
                                                  "deconvnet", "guided backprop"}
    assert "Left out for" in html
    verdicts = dict(zip((str(c) for c in res.finding_claim.values), (str(v) for v in res.finding_verdict.values)))
    assert verdicts["LRP a2b1: MoRF AOPC above random (Samek et al. 2017, Fig. 4)"] == "not tested"
    assert verdicts["sensitivity l2: MoRF AOPC above random (Samek et al. 2017, Fig. 4)"] != "not tested"
    assert [str(i) for i in res.image.values][0].split("/")[0] in CLASSES
    assert res.attrs["model_source"] == "torchscript"


def test_available_fisher_is_the_configured_one_or_lrpkits_own_on_its_scenes(tmp_path, monkeypatch):
    fv = sources.ModelSource(model=object(), name="my FV", source="fisher", classes=("a",),
                             output="multilabel", transform=lambda im: im)
    net = sources.ModelSource(model=object(), name="net", source="torchvision", classes=("a",),
                              output="singlelabel", transform=lambda im: im)
    data = sources.DatasetSource(name="d", source="voc", root=tmp_path, split="test", classes=("a",),
                                 ids=[], paths=[], labels=np.zeros((0, 1)), ignore=np.zeros((0, 1), bool),
                                 boxes=[], box_names=[], difficult=[])
    user = load_config({"paths": {"models": str(tmp_path / "m")},
                        "model": {"source": "torchvision", "arch": "resnet18", "weights": "w.pt"},
                        "dataset": {"source": "voc", "root": str(tmp_path)}})
    assert pipeline.available_fisher(user, sources.Sources([net, fv], data)) is fv
    assert pipeline.available_fisher(user, sources.Sources([net], data)) is None
    scenes = load_config({"paths": {"models": str(tmp_path / "m")}})
    assert pipeline.available_fisher(scenes, sources.Sources([net], data)) is None   # not fitted yet
    calls = []
    monkeypatch.setattr(pipeline, "load_dataset_fisher", lambda cfg, **kw: calls.append(kw) or fv)
    pipeline.fisher_path(scenes).parent.mkdir(parents=True)
    pipeline.fisher_path(scenes).write_bytes(b"")
    assert pipeline.available_fisher(scenes, sources.Sources([net], data)) is fv
    assert len(calls) == 1 and calls[0]["fit"] is False          # never fits one for the report
    # a user's data set (same models folder): lrpkit fits no FV of its own, so the file is not taken
    assert pipeline.fisher_path(user) == pipeline.fisher_path(scenes)
    assert pipeline.available_fisher(user, sources.Sources([net], data)) is None
