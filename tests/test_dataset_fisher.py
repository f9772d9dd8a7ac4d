"""What notebooks 00, 01 and 03 compute for a user's model and data: per-class counts and example
images (lrpkit.data.summary), the scored images of a loaded dataset (dataset_twins) and a loaded
model's scores read at the dataset's classes (image_scores), heatmaps of a loaded model on its own
input (source_heatmaps, source_map_model), and the Fisher-vector model lrpkit fits on the data's
training split (pipeline.load_dataset_fisher), on the hand-written devkit of tests/userdata.py."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import yaml

from lrpkit import load_config, pipeline, sources
from lrpkit.data.summary import class_counts, images_of_class
from lrpkit.evaluate.scoring import ap_by_split, dataset_twins, image_scores
from lrpkit.evaluate.shallow_deep import class_average_heatmaps, map_key, source_map_model
from lrpkit.heatmaps import heatmap_params, source_heatmaps
from userdata import CLASSES, SPLITS, write_user_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    path = write_user_project(tmp_path_factory.mktemp("user"))
    cfg = load_config(path)
    return cfg, sources.load_sources(cfg)


def test_class_counts_follow_the_voc_convention(project):
    _, src = project
    c = class_counts(src.dataset)
    assert list(c["class"].values) == list(CLASSES) and c.attrs["n_total"] == len(SPLITS["test"])
    # test: 104 (cat, difficult only), 105 (dog, cat), 106 (kiwi), 101 (cat, kiwi)
    assert c.n_images.values.tolist() == [2, 1, 2]
    assert c.n_difficult_only.values.tolist() == [1, 0, 0]
    assert c.n_objects.values.tolist() == [3, 1, 2]
    assert c.n_difficult_objects.values.tolist() == [1, 0, 0]


def test_images_of_class_orders_single_objects_or_landscapes_first(project):
    _, src = project
    ds = src.dataset
    kiwi = [ds.ids.index("2009_000106"), ds.ids.index("2009_000101")]   # one box, portrait; two, landscape
    assert images_of_class(ds, "kiwi") == sorted(kiwi)
    assert images_of_class(ds, "kiwi", single_first=True) == kiwi
    assert images_of_class(ds, "kiwi", landscape_first=True) == kiwi[::-1]
    assert images_of_class(ds, "kiwi", 1, landscape_first=True) == [kiwi[1]]
    assert ds.ids.index("2009_000104") not in images_of_class(ds, "cat")   # difficult only
    with pytest.raises(ValueError, match="'emu'"):
        images_of_class(ds, "emu")


def test_dataset_twins_keys_rows_by_the_users_ids(project):
    _, src = project
    ds = src.dataset
    tw = dataset_twins(ds)
    assert tw.splits == ["test"] and tw.keys == list(ds.ids) == SPLITS["test"]
    assert np.array_equal(tw.labels["test"], ds.labels) and np.array_equal(tw.ignore["test"], ds.ignore)
    sub = dataset_twins(ds, n_images=2, seed=3)
    rows = sorted(np.random.default_rng(3).permutation(len(ds))[:2])
    assert sub.keys == [ds.ids[i] for i in rows]


def test_image_scores_of_a_loaded_model_read_the_named_outputs(project):
    _, src = project
    m, ds = src.model, src.dataset
    images = ds.images([0, 1])
    full = image_scores(m, images)
    assert np.allclose(full, m.scores(m.inputs(images)), atol=1e-5)
    assert not np.allclose(full[:, 0], full[:, 2])
    rev = image_scores(m, images, classes=["kiwi", "cat"])
    assert np.allclose(rev, full[:, [2, 0]])
    with pytest.raises(ValueError, match="emu"):
        image_scores(m, images, classes=["cat", "emu"])
    # AP over the dataset's classes, rows named by the image ids
    res = ap_by_split({m.name: m}, dataset_twins(ds))
    assert list(res.image.values) == SPLITS["test"] and list(res["class"].values) == list(CLASSES)
    assert np.allclose(res.scores.sel(split="test", model=m.name).values[:2], full, atol=1e-5)


def test_source_heatmaps_explain_the_target_on_the_models_input(project):
    _, src = project
    m, ds = src.model, src.dataset
    images = ds.images([1, 2])
    x = m.inputs(images)
    logits = m.scores(x)
    t = [int(np.argmin(row)) for row in logits]                 # not the arg-max
    maps = source_heatmaps(m, images, t, composite="alpha2_beta1")
    assert maps.relevance.shape == (2, m.crop, m.crop) and maps.inputs.shape == (2, m.crop, m.crop, 3)
    assert np.allclose(maps.scores, logits[[0, 1], t], atol=1e-5)
    assert np.allclose(maps.inputs, m.rgb(x).permute(0, 2, 3, 1).numpy(), atol=1e-6)
    assert 0.0 <= maps.inputs.min() and maps.inputs.max() <= 1.0
    other = source_heatmaps(m, images, [(v + 1) % 3 for v in t], composite="alpha2_beta1")
    assert not np.allclose(other.relevance, maps.relevance)
    with pytest.raises(ValueError, match="output index"):
        source_heatmaps(m, images, 3)


def test_source_map_model_reads_the_class_order_and_maps_boxes(project):
    _, src = project
    m, ds = src.model, src.dataset
    mm = source_map_model(m, ["kiwi", "dog", "cat"], composite="alpha2_beta1")
    assert mm.name == m.name
    img = ds.image(3)
    maps, f = mm.maps([img], 0)                                  # class 0 here = output 2 (kiwi)
    ref = source_heatmaps(m, [img], 2, composite="alpha2_beta1")
    assert np.allclose(maps[0], ref.relevance[0]) and np.allclose(f, ref.scores)
    box = ds.target(3)["boxes"]
    assert np.allclose(mm.boxes(box, img.size), m.input_boxes(box, img.size))
    with pytest.raises(ValueError, match="emu"):
        source_map_model(m, ["emu"])


def test_heatmap_params_fall_back_for_torchscript(project):
    _, src = project
    params, note = heatmap_params(src.model.model, composite="epsilon")
    assert params == {"method": "lrp", "composite": "epsilon"} and note is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch marks torch.jit deprecated
        scripted = torch.jit.script(src.model.model)
    params, note = heatmap_params(scripted, composite="epsilon")
    assert params == {"method": "gradient_x_input"} and "TorchScript" in note


def test_class_average_heatmaps_name_models_and_images(project):
    _, src = project
    m, ds = src.model, src.dataset
    mm = source_map_model(m, list(CLASSES), name="my net", composite="alpha2_beta1")
    chosen = {c: images_of_class(ds, c, 2) for c in CLASSES}
    samples = {c: [(ds.image(i), ds.target(i)["boxes"]) for i in idx] for c, idx in chosen.items()}
    ids = {c: [ds.ids[i] for i in idx] for c, idx in chosen.items()}
    avg = class_average_heatmaps([mm], samples, list(CLASSES), image_ids=ids)
    assert map_key("my net") == "my_net" and "avg_heatmap_my_net" in avg
    assert avg.image_id.sel({"class": "dog"}).values.tolist() == ["2009_000105", ""]
    with pytest.raises(ValueError, match="image_ids"):
        class_average_heatmaps([mm], samples, list(CLASSES), image_ids={**ids, "cat": ids["cat"][:1]})


def test_the_fv_model_of_a_dataset_is_fitted_once_and_kept_by_fingerprint(project, capsys):
    cfg, src = project
    fv = pipeline.load_dataset_fisher(cfg, sources=src)
    assert fv.source == "fisher" and fv.name == "FV" and list(fv.classes) == list(CLASSES)
    assert "fitted the Fisher-vector model on 3 images" in capsys.readouterr().out
    assert fv.path.parent.parent == pipeline.models_root(cfg) / "fisher"
    fp = json.loads((fv.path.parent / pipeline.FINGERPRINT).read_text())
    assert fp["data"]["split"] == "train" and fp["data"]["images"] == len(SPLITS["train"])
    scores = fv.scores(src.dataset.images())
    assert scores.shape == (len(SPLITS["test"]), 3) and np.ptp(scores) > 0
    again = pipeline.load_dataset_fisher(cfg, sources=src, fit=False)       # cached: no refit
    assert again.path == fv.path and "loaded from" in capsys.readouterr().out
    assert np.allclose(again.scores(src.dataset.images()), scores)
    # another fisher setting is another model (not fitted with fit=False)
    other = load_config({**cfg.to_dict(), "fisher": {**cfg.fisher.to_dict(), "C": 0.5}})
    with pytest.raises(FileNotFoundError, match="no Fisher-vector model fitted"):
        pipeline.load_dataset_fisher(other, fit=False)
    assert pipeline.dataset_fisher_path(other, pipeline.dataset_fisher_fingerprint(
        other, pipeline.training_split(other))) != fv.path


def test_no_training_split_is_its_own_error(project):
    cfg, _ = project
    for train_split, match in ((None, "train_split is not set"), ("nope", "'nope'")):
        raw = {**cfg.to_dict(), "dataset": {**cfg.dataset.to_dict(), "train_split": train_split}}
        with pytest.raises(pipeline.NoTrainingSplit, match=match):
            pipeline.load_dataset_fisher(load_config(raw))


def test_a_fisher_entry_among_the_models_is_used_as_it_is(project, tmp_path):
    cfg, src = project
    fv = pipeline.load_dataset_fisher(cfg, sources=src)
    raw = cfg.to_dict()
    raw["models"] = [raw.pop("model"), {"source": "fisher", "weights": str(fv.path), "name": "mine"}]
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(raw))
    two = sources.load_sources(path)
    assert pipeline.load_dataset_fisher(path, sources=two) is two.models[1]
    assert pipeline.load_dataset_fisher(path).name == "mine"
