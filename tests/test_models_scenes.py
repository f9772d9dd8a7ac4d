"""A short CNN training run on generated bias-zoo scenes learns (Lapuschkin et al. 2016, App. E set-up)."""
import numpy as np
import pytest

from lrpkit.config import load_config
from lrpkit.models import evaluate_map, load_cnn
from lrpkit.pipeline import train_cnn_from_config as train_from_config
from lrpkit.results import open_dataset


@pytest.fixture(scope="module")
def small_scenes(tmp_path_factory):
    from lrpkit.data import generate_scenes

    root = tmp_path_factory.mktemp("scenes")
    return generate_scenes(root, n_train=240, n_val=40, n_test=120, seed=0, progress=False)


@pytest.mark.slow
def test_short_training_on_scenes_learns(small_scenes, tmp_path):
    cfg = load_config("smoke")
    cfg["paths"] = {"scenes": str(small_scenes), "models": str(tmp_path / "models")}
    # smoke settings (tiny input and net), but enough epochs to learn: ~20-80 s on 2 busy cores
    res = train_from_config(cfg, progress=False, epochs=12, checkpoints=[0, 1, 4], batch_size=32)
    out = tmp_path / "models" / "cnn"
    assert sorted(p.name for p in out.glob("cnn_epoch*.pt")) == [
        "cnn_epoch000.pt", "cnn_epoch001.pt", "cnn_epoch004.pt", "cnn_epoch012.pt"]
    hist = open_dataset(out / "history.nc")
    assert dict(hist.sizes) == {"epoch": 12, "class": 6}
    assert list(hist["class"].values) == ["aeroplane", "boat", "bus", "car", "horse", "sheep"]
    test = open_dataset(out / "test_map.nc")
    prevalence = float(test["labels"].mean())        # chance mAP ~ class prevalence (~0.2)
    # measured 0.70 / 0.74 (seeds 0 / 1, 12 epochs, a 240/60/200 scene set); chance ~0.2
    assert res.mAP >= 0.6, test["ap"].values
    assert res.mAP >= prevalence + 0.35
    assert hist["val_map"].values[-1] > hist["val_map"].values[0]
    # the final checkpoint reproduces the written result through the public loader
    model = load_cnn(out / "cnn.pt")
    ev = evaluate_map(model, small_scenes, "test")
    np.testing.assert_allclose(ev["ap"].values, test["ap"].values, rtol=1e-5)
    # an earlier checkpoint is a worse model
    early = evaluate_map(load_cnn(out / "cnn_epoch001.pt"), small_scenes, "test")
    assert early.attrs["mAP"] < res.mAP
