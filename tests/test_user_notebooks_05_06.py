"""Notebooks 05 (PDA) and 06 (FGVis) on a user's model and data: a random torchvision ResNet-18
(saved as a state dict, and as TorchScript) on a hand-written VOC devkit (tests/userdata.py),
run through papermill in a child process and exported to HTML (lrpkit.batch.run_notebook), one
notebook at a time.  The reports render, their results hold the devkit's image ids and class
names and name the model and data analysed, and the sections the data cannot feed (the scene
set's planted tag, LRP / Grad-CAM on TorchScript) say in one sentence that they are skipped."""
from __future__ import annotations

import pytest

from lrpkit.batch import run_notebook
from lrpkit.config import project_root
from lrpkit.results import open_dataset

from userdata import CLASSES, SPLITS, write_user_project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # two notebook runs in a fixture

NB_DIR = project_root() / "notebooks"
TEST_IDS = SPLITS["test"]


@pytest.fixture(scope="module", params=["state dict", "torchscript"])
def reports(request, tmp_path_factory):
    """Both notebooks run on one user project; returns ``(kind, project, out, runs)``."""
    where = tmp_path_factory.mktemp("user_" + request.param.replace(" ", "_"))
    cfg = write_user_project(where, model=request.param)
    out = where / "reports"
    runs = {nb: run_notebook(NB_DIR / f"{nb}.ipynb", out, cfg, timeout=900)
            for nb in ("05_pda_speedup", "06_fgvis_bias_probes")}
    return request.param, where, out, runs


def _ok(run):
    assert run.ok, f"{run.name} failed in cell {run.failed_cell}: {run.error}"
    assert run.html is not None and run.html.stat().st_size > 10_000
    return open_dataset(run.results), run.html.read_text(encoding="utf-8")


def _names_what_was_analysed(ds, kind, where):
    a = ds.attrs
    assert a["model_source"] == ("torchvision" if kind == "state dict" else "torchscript")
    assert a["model_path"].startswith(str(where / "weights"))
    assert a["dataset_source"] == "voc" and a["dataset_split"] == "test"
    assert a["dataset_root"].startswith(str(where / "VOCdevkit"))
    assert int(a["dataset_images"]) == len(TEST_IDS)


def test_pda_report_on_the_users_model(reports):
    kind, where, out, runs = reports
    ds, html = _ok(runs["05_pda_speedup"])
    _names_what_was_analysed(ds, kind, where)
    # the user's image ids and class names, not indices or scene ids
    assert set(ds["image_id"].values) <= set(TEST_IDS) and ds.sizes["image"] >= 1
    assert set(ds["target_class"].values) <= set(CLASSES)
    assert set(ds["approx_image_id"].values) <= set(TEST_IDS) and ds.sizes["approx_image"] >= 1
    assert set(ds["approx_class"].values) <= set(CLASSES)
    # prob from the model's output kind (the user config says multilabel), N = 3 training images
    assert ds.attrs["prob"] == "sigmoid" and int(ds.attrs["laplace_n"]) == len(SPLITS["train"])
    # the patch model was fitted on the training split and kept under paths.models
    assert ds.attrs["patch_model"].startswith(str(where / "models" / "pda"))
    assert "3 training images of `VOC2007/train`" in ds.attrs["patch_model_images"]
    assert (where / "models" / "pda").is_dir() and list((where / "models" / "pda").glob("*.npz"))
    pda = ["sampling", "mean of 3 samples", "mean", "gradient"]
    if kind == "torchscript":   # LRP swaps layers: not in a compiled model; said once, visibly
        assert list(ds["method"].values) == pda
        assert "LRP next to PDA: skipped." in html
        assert "LRP" not in ds["inv_method"].values
    else:
        assert list(ds["method"].values) == [*pda, "LRP"]
        assert "skipped." not in html
    # the fast variants explain every image; sampling (S passes per window) the first ones
    assert bool(ds["heatmap"].sel(method=["mean", "gradient"]).notnull().all())
    assert bool(ds["heatmap"].sel(method="sampling").isel(image=0).notnull().all())
    assert float(abs(ds["heatmap"]).sum()) > 0
    assert bool((ds["approx_error"] >= 0).all())
    # findings generated from the run's numbers, intervals beside the AOPC estimates
    claims = list(ds["finding_claim"].values)
    assert any("Fig. 12" in c for c in claims) and any("AOPC" in c for c in claims)
    assert any("Fig. 11" in c for c in claims)
    assert set(ds["finding_verdict"].values) <= {"reproduced", "not resolved", "contradicted",
                                                 "not tested"}
    assert ds["aopc_minus_random"].sizes["bound"] == 3
    assert "Findings" in html and "claims:" in html     # the generated table (lrpkit.evaluate.findings)


def test_fgvis_report_on_the_users_model(reports):
    kind, where, out, runs = reports
    ds, html = _ok(runs["06_fgvis_bias_probes"])
    _names_what_was_analysed(ds, kind, where)
    assert set(ds.attrs["sections"]) >= {"faithfulness", "colour"}
    # the colour swap runs for every class of the user's model, named
    assert list(ds["colour_class"].values) == list(CLASSES)
    assert set(ds["colour_masked_image"].values) <= set(TEST_IDS)
    assert set(ds["faithfulness_image"].values) <= set(TEST_IDS)
    if "defence" in ds.attrs["sections"]:
        assert list(ds["defence_pred_class"].values) == list(CLASSES)
        assert set(ds["defence_image"].values) <= set(TEST_IDS)
    # the planted tag is lrpkit's scene set's: skipped with one sentence, no tag results
    assert "Tag bias: skipped." in html and "tag" not in ds.attrs["sections"]
    assert not [v for v in ds.data_vars if v.startswith("tag_")]
    methods = set(ds["faithfulness_method"].values)
    if kind == "torchscript":
        assert methods == {"fgvis", "sensitivity", "occlusion"}
        assert "Left out for this model: gradcam, lrp" in html
    else:
        assert methods == {"fgvis", "lrp", "sensitivity", "occlusion", "gradcam"}
    # findings first, generated from the run; planted-truth claims are "not tested" with the reason
    claims = list(ds["finding_claim"].values)
    verdict = dict(zip(claims, ds["finding_verdict"].values))
    reason = dict(zip(claims, ds["finding_reason"].values))
    assert sum("Table 2" in c for c in claims) == len(methods) - 1
    assert set(verdict.values()) <= {"reproduced", "not resolved", "contradicted", "not tested"}
    colour = [c for c in claims if "Table A3" in c]
    assert colour and all(verdict[c] == "not tested" and "planted" in reason[c] for c in colour)
    tag = [c for c in claims if "tag" in c]
    assert len(tag) == 1 and verdict[tag[0]] == "not tested"
    assert ds["faithfulness_auc_interval"].sizes["faithfulness_bound"] == 3
    assert html.index("Findings") < html.index("The four games")
