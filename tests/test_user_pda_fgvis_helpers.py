"""What notebooks 05 / 06 need to run on a user's model: PDA's parameters from the model's output
kind (lrpkit.pipeline.pda_params), the patch model fitted on the training split and cached under
paths.models with a fingerprint (load_patch_model), the model's own pixel range, display inverse
and box mapping (ModelSource.bounds / rgb / input_boxes / margins / describe), and the colour swap
in the model's own normalisation (lrpkit.fgvis.experiments.channel_swap)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import lrpkit
from lrpkit import pipeline, sources
from lrpkit.fgvis.experiments import SWAPS, channel_swap
from lrpkit.sources import ModelSource, PadCrop

from userdata import CLASSES, SMALL, SPLITS, write_user_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    where = tmp_path_factory.mktemp("user_pda")
    return where, write_user_project(where)


def _model(output: str = "multilabel", **kw) -> ModelSource:
    base = dict(model=torch.nn.Linear(2, 3), name="m", source="python", classes=("a", "b", "c"),
                output=output, transform=None)
    return ModelSource(**{**base, **kw})


# --------------------------------------------------------------------------- PDA parameters

def test_pda_prob_follows_the_models_output_kind_unless_the_config_sets_it():
    cfg = lrpkit.load_config("smoke")
    train = list(range(7))                       # anything with a length: N of the Laplace correction
    assert pipeline.pda_params(cfg, _model("multilabel"), train)["prob"] == "sigmoid"
    single = pipeline.pda_params(cfg, _model("singlelabel"), train)
    assert single["prob"] == "softmax" and single["laplace_n"] == 7
    assert single["samples"] == cfg.pda.samples and single["window"] == cfg.pda.window
    assert pipeline.pda_params(cfg, _model("singlelabel"), None)["laplace_n"] is None
    own = lrpkit.load_config("smoke", pda={"prob": "score", "laplace_n": 50})
    got = pipeline.pda_params(own, _model("singlelabel"), train)
    assert got["prob"] == "score" and got["laplace_n"] == 50
    assert own.pda.overrides() == {"samples": 3, "prob": "score", "laplace_n": 50}


# --------------------------------------------------------------------------- the patch model

def test_patch_model_is_fitted_on_the_training_split_in_the_models_input_space(project, capsys):
    where, cfg_path = project
    cfg = lrpkit.load_config(cfg_path)
    src = sources.load_sources(cfg)
    m = src.model
    pm = pipeline.load_patch_model(cfg, m)
    assert "fitted the patch model on 3 images of VOC2007/train" in capsys.readouterr().out
    path = pipeline.patch_model_path(cfg, pm.meta)
    assert path.parent == where / "models" / "pda" and path.is_file()
    assert path.name.startswith(f"patch_w{cfg.pda.window}_o{cfg.pda.outer}_")
    assert pm.n_images == len(SPLITS["train"]) and pm.channels == 3
    assert pm.meta["data"]["split"] == "train" and pm.meta["input"] == repr(m.transform)
    # the same numbers as a fit on the model's inputs of the training images (seeded draw)
    train = pipeline.training_split(cfg)
    assert train.ids == SPLITS["train"]
    idx = np.random.default_rng(cfg.seed).permutation(len(train))[:cfg.pda.patch_images]
    ref = lrpkit.pda.PatchModel(cfg.pda.window, cfg.pda.outer).fit(
        m.inputs(train.images([int(i) for i in idx])), max_patches=cfg.pda.patch_max_patches,
        seed=cfg.seed)
    torch.testing.assert_close(pm.mean, ref.mean)
    torch.testing.assert_close(pm.cov, ref.cov)
    # kept: the second call reads the file, refits nothing
    stamp = path.stat().st_mtime_ns
    again = pipeline.load_patch_model(cfg, m)
    assert "patch model loaded from" in capsys.readouterr().out
    assert path.stat().st_mtime_ns == stamp
    torch.testing.assert_close(again.cov, pm.cov)


def test_patch_model_fingerprint_tracks_preprocessing_and_training_images(project, capsys):
    where, cfg_path = project
    cfg = lrpkit.load_config(cfg_path)
    m = sources.load_sources(cfg).model
    before = pipeline.load_patch_model(cfg, m)
    first = pipeline.patch_model_path(cfg, before.meta)
    # another input space (crop): another file, both kept
    other = sources.load_model({**cfg.model.to_dict(), "size": 60, "crop": 48}, cfg,
                               classes=list(CLASSES))
    pm48 = pipeline.load_patch_model(cfg, other)
    p48 = pipeline.patch_model_path(cfg, pm48.meta)
    assert p48 != first and p48.is_file() and first.is_file()
    # the model's weights are not part of it (the Gaussian lives in the input space)
    fp = pipeline.patch_model_fingerprint(cfg, m, pipeline.training_split(cfg), window=10, outer=18)
    assert "weights" not in str(fp) and fp["data"]["images"] == len(SPLITS["train"])
    # a training image that changes on disk makes a new fit
    img = where / "VOCdevkit" / "VOC2007" / "JPEGImages" / f"{SPLITS['train'][0]}.jpg"
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(img)
    capsys.readouterr()
    changed = pipeline.load_patch_model(cfg, m)
    assert "fitted the patch model" in capsys.readouterr().out
    assert pipeline.patch_model_path(cfg, changed.meta) != first
    assert not torch.allclose(changed.mean, before.mean)
    with pytest.raises(FileNotFoundError, match="no patch model fitted"):
        pipeline.load_patch_model(cfg, m, window=8, outer=14, fit=False)


def test_patch_model_needs_a_training_split_and_a_torch_model(project):
    _, cfg_path = project
    cfg = lrpkit.load_config(cfg_path, dataset={"train_split": None})
    m = sources.load_sources(cfg).model
    with pytest.raises(ValueError, match="dataset.train_split"):
        pipeline.load_patch_model(cfg, m)
    missing = lrpkit.load_config(cfg_path, dataset={"train_split": "trainval"})
    with pytest.raises(FileNotFoundError, match="trainval"):
        pipeline.load_patch_model(missing, m)
    with pytest.raises(TypeError, match="torch model"):
        pipeline.load_patch_model(cfg, _model(model=object()))


# --------------------------------------------------------------------------- ModelSource helpers

def _rect_image(w: int, h: int, box: tuple[int, int, int, int]) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = 255
    return Image.fromarray(a)


def _bright_box(x: torch.Tensor, m: ModelSource) -> np.ndarray:
    on = m.rgb(x).mean(0).numpy() > 0.5
    ys, xs = np.nonzero(on)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("resize", ["shorter", "pad"])
@pytest.mark.parametrize("wh", [(90, 60), (50, 100)])
def test_input_boxes_follow_the_models_resize_and_crop(project, resize, wh):
    _, cfg_path = project
    cfg = lrpkit.load_config(cfg_path)
    if resize == "shorter":   # the fixture's torchvision preprocessing: Resize(72), CenterCrop(64)
        m = sources.load_sources(cfg).model
        assert (m.resize, m.size, m.crop) == ("shorter", SMALL["size"], SMALL["crop"])
    else:                     # the scene CNN's: longest side to size, edge-padded, centre crop
        mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
        m = _model(transform=PadCrop(72, 64, mean, std), mean=mean, std=std, size=72, crop=64,
                   resize="pad")
    w, h = wh
    box = (w // 4, h // 3, w // 2 + 7, 2 * h // 3)
    got = m.input_boxes([box], (w, h))[0]
    seen = _bright_box(m.transform(_rect_image(w, h, box)), m)
    np.testing.assert_allclose(got, seen, atol=1.5)
    assert got.dtype == np.float32 and (got >= 0).all() and (got <= m.crop).all()


def test_bounds_and_rgb_use_the_models_normalisation():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    m = _model(transform=PadCrop(8, 8, mean, std), mean=mean, std=std, size=8, crop=8, resize="pad")
    low, high = m.bounds
    np.testing.assert_allclose(low.flatten(), [-2.5, -1.6, -1.0], rtol=1e-6)
    np.testing.assert_allclose(high.flatten(), [2.5, 2.4, 2 + 1 / 3], rtol=1e-6)
    a = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = m.transform(Image.fromarray(a))
    np.testing.assert_allclose(m.rgb(x).permute(1, 2, 0).numpy(), a / 255.0, atol=1e-5)
    assert _model(model=object(), mean=None).bounds is None


def test_margins_mark_the_models_decisions():
    s = np.array([[1.0, 3.0, 2.0], [-1.0, -2.0, -0.5]])
    np.testing.assert_array_equal(_model("multilabel").margins(s), s)  # sigmoid > 0.5 <=> s > 0
    single = _model("singlelabel").margins(s)
    np.testing.assert_allclose(single, [[-2.0, 1.0, -1.0], [-0.5, -1.5, 0.5]])
    assert ((single > 0) == (s == s.max(1, keepdims=True))).all()


def test_describe_names_model_and_data(project):
    _, cfg_path = project
    src = sources.load_sources(cfg_path)
    a = sources.describe(src.model, src.dataset)
    assert a["model_name"] == "resnet18" and a["model_source"] == "torchvision"
    assert a["model_path"].endswith("resnet18_sd.pt") and a["model_output"] == "multilabel"
    assert a["dataset_source"] == "voc" and a["dataset_split"] == "test"
    assert a["dataset_images"] == len(SPLITS["test"])
    assert sources.describe([src.model, src.model])["models"][1]["model_name"] == "resnet18"


# --------------------------------------------------------------------------- colour swap

def test_channel_swap_in_the_models_own_normalisation():
    rgb = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    norm = lambda t: (t - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)  # noqa: E731
    got = channel_swap(norm(rgb), (1, 0, 2), mean=mean, std=std)     # R <-> G
    torch.testing.assert_close(got, norm(rgb[:, [1, 0, 2]]))
    got = channel_swap(norm(rgb), "GRB", mean=mean, std=std)
    torch.testing.assert_close(got, norm(rgb[:, list(SWAPS["GRB"])]))
    # the default is ImageNet's normalisation, as before
    from lrpkit.data.transforms import MEAN, STD, normalize

    torch.testing.assert_close(channel_swap(normalize(rgb), "RBG"),
                               channel_swap(normalize(rgb), "RBG", mean=MEAN, std=STD))
    torch.testing.assert_close(channel_swap(normalize(rgb), "RBG"),
                               normalize(rgb[:, list(SWAPS["RBG"])]))
