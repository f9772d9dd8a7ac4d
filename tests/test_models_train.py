"""Hinge loss, training plumbing (checkpoints, history, determinism) and mAP evaluation."""
import numpy as np
import pytest
import torch
import xarray as xr

from lrpkit.models import evaluate_map, hinge_loss, load_cnn, train_cnn
from lrpkit.pipeline import train_cnn_from_config as train_from_config
from lrpkit.models.train import checkpoint_name
from lrpkit.results import open_dataset


def test_hinge_loss_hand_computed():
    scores = torch.tensor([[2.0, -0.5, 0.3], [-2.0, 0.5, 1.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    # image 0: max(0,1-2)=0, max(0,1-0.5)=0.5, max(0,1-0.3)=0.7 -> 1.2
    # image 1: max(0,1-2)=0, max(0,1-0.5)=0.5, max(0,1+1)=2.0  -> 2.5
    assert hinge_loss(scores, labels).item() == pytest.approx((1.2 + 2.5) / 2)
    assert hinge_loss(scores, 2 * labels - 1).item() == pytest.approx(1.85)
    ignore = torch.tensor([[False, False, False], [False, False, True]])
    assert hinge_loss(scores, labels, ignore).item() == pytest.approx((1.2 + 0.5) / 2)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        hinge_loss(scores, labels[:, :2])
    # gradient is -y on the active margins, 0 elsewhere (per image, / N)
    s = scores.clone().requires_grad_(True)
    hinge_loss(s, labels).backward()
    torch.testing.assert_close(s.grad, torch.tensor([[0.0, 0.5, -0.5], [0.0, -0.5, 0.5]]))


class FakeScenes:
    """A tiny VOC-style dataset: class c is a bright square of colour c on a noisy background."""

    COLOURS = np.array([[230, 30, 30], [30, 200, 30], [40, 40, 230]], np.uint8)

    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.classes = ("red", "green", "blue")
        self.ids = [f"{seed}_{i:04d}" for i in range(n)]
        self.labels = np.zeros((n, 3), np.float32)
        self.images = []
        for i in range(n):
            h, w = (30, 40) if i % 2 else (40, 30)
            img = rng.integers(90, 160, (h, w, 3)).astype(np.uint8)
            present = rng.random(3) < 0.4
            if not present.any():
                present[rng.integers(3)] = True
            for c in np.flatnonzero(present):
                y, x = rng.integers(0, h - 10), rng.integers(0, w - 10)
                img[y:y + 10, x:x + 10] = self.COLOURS[c]
                self.labels[i, c] = 1
            self.images.append(img)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self.images[i], {"id": self.ids[i], "labels": self.labels[i]}


TINY = dict(epochs=3, lr=3e-3, batch_size=16, size=24, crop=16, width=4, mult=(1, 2), hidden=16,
            dropout=0.0, num_threads=1, progress=False)


@pytest.fixture(scope="module")
def fake_splits():
    return {"train": FakeScenes(96, 0), "val": FakeScenes(32, 1), "test": FakeScenes(48, 2)}


def test_train_writes_checkpoints_history_and_is_deterministic(tmp_path, fake_splits):
    res = train_cnn(fake_splits, tmp_path / "a", seed=5, checkpoints=(0, 1, 2), **TINY)
    out = tmp_path / "a"
    for e in (0, 1, 2, 3):
        assert (out / checkpoint_name(e)).is_file()
    assert sorted(res.checkpoints) == [0, 1, 2, 3]
    assert (out / "cnn.pt").is_file() and res.final_path == out / "cnn.pt"
    hist = open_dataset(out / "history.nc")
    assert dict(hist.sizes) == {"epoch": 3, "class": 3}
    assert list(hist["class"].values) == ["red", "green", "blue"]
    assert list(hist["epoch"].values) == [1, 2, 3]
    for v in ("train_loss", "val_map", "lr", "time_s", "epoch_time_s"):
        assert hist[v].dims == ("epoch",) and np.isfinite(hist[v].values).all()
    assert hist["val_ap"].dims == ("epoch", "class")
    assert hist.attrs["epochs"] == 3 and hist.attrs["mult"] == [1, 2]
    assert np.all(np.diff(hist["time_s"].values) > 0)
    tm = open_dataset(out / "test_map.nc")
    assert tm["ap"].dims == ("class",) and tm["scores"].dims == ("image", "class")
    assert tm.attrs["mAP"] == pytest.approx(res.mAP) == pytest.approx(float(np.nanmean(tm["ap"])))
    # the loaded final model reproduces the test result, meta is complete
    m = load_cnn(out / "cnn.pt")
    assert m.meta["epoch"] == 3 and m.meta["input_size"] == 16 and m.meta["size"] == 24
    assert m.meta["classes"] == ["red", "green", "blue"]
    ev = evaluate_map(m, fake_splits, "test")
    np.testing.assert_allclose(ev["ap"].values, tm["ap"].values)
    # epoch-0 checkpoint is the untrained initialisation: differs from the final one
    m0 = load_cnn(out / checkpoint_name(0))
    assert not torch.equal(m0.features[0].weight, m.features[0].weight)
    # same seed -> identical weights; another seed -> different
    res2 = train_cnn(fake_splits, tmp_path / "b", seed=5, checkpoints=(), **TINY)
    for (k, v), v2 in zip(res.model.state_dict().items(), res2.model.state_dict().values()):
        assert torch.equal(v, v2), k
    np.testing.assert_array_equal(res.history["train_loss"].values, res2.history["train_loss"].values)
    res3 = train_cnn(fake_splits, tmp_path / "c", seed=6, checkpoints=(), **TINY)
    assert not torch.equal(res.model.features[0].weight, res3.model.features[0].weight)
    # global RNG state and determinism flag are left as they were
    assert not torch.are_deterministic_algorithms_enabled()
    # retraining into the same folder replaces it whole: no checkpoint of the earlier run stays
    train_cnn(fake_splits, tmp_path / "a", seed=5, checkpoints=(1,), **TINY)
    assert sorted(p.name for p in out.glob("cnn_epoch*.pt")) == [checkpoint_name(1), checkpoint_name(3)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_failed_training_leaves_the_folder_as_it_was(tmp_path, fake_splits):
    out = tmp_path / "m"
    out.mkdir()
    (out / "cnn.pt").write_bytes(b"an earlier model")
    with pytest.raises(ValueError):
        train_cnn(fake_splits, out, seed=5, checkpoints=(0,), train_split="nope", **TINY)
    assert (out / "cnn.pt").read_bytes() == b"an earlier model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_train_learns_fake_scenes(tmp_path, fake_splits):
    params = dict(TINY, epochs=20, width=8, hidden=32)
    res = train_cnn(fake_splits, tmp_path, seed=0, checkpoints=(), **params)
    prevalence = fake_splits["test"].labels.mean(0)
    assert res.mAP > 0.8, res.test_map["ap"].values
    assert res.mAP > prevalence.mean() + 0.3
    assert res.history["train_loss"].values[-1] < res.history["train_loss"].values[0]


def test_evaluate_map_restores_mode_and_checks_classes(fake_splits):
    from lrpkit.models import SceneCNN

    m = SceneCNN(3, width=4, mult=(1, 2), hidden=8, input_size=16).train()
    ds = evaluate_map(m, fake_splits["test"], "test", size=24, crop=16)
    assert m.training
    assert isinstance(ds, xr.Dataset) and list(ds["class"].values) == ["red", "green", "blue"]
    assert ds.sizes["image"] == 48
    assert 0 <= ds.attrs["mAP"] <= 1
    # a model trained on the same classes in another order is refused, not scored wrongly
    swapped = SceneCNN(3, width=4, mult=(1, 2), hidden=8, input_size=16,
                       classes=["blue", "green", "red"])
    with pytest.raises(ValueError, match="order matters"):
        evaluate_map(swapped, fake_splits["test"], "test", size=24, crop=16)
    m4 = SceneCNN(4, width=4, mult=(1, 2), hidden=8, input_size=16)
    with pytest.raises(ValueError, match="4 scores"):
        evaluate_map(m4, fake_splits["test"], "test", size=24, crop=16)
    with pytest.raises(ValueError, match="split 'nope'"):
        evaluate_map(m, fake_splits, "nope", size=24, crop=16)
    with pytest.raises(FileNotFoundError, match="no data folder"):
        evaluate_map(m, "/nonexistent/scenes", "test")


def test_train_argument_errors(tmp_path, fake_splits):
    with pytest.raises(ValueError, match="epochs"):
        train_cnn(fake_splits, tmp_path, **dict(TINY, epochs=0))
    with pytest.raises(ValueError, match="optimizer"):
        train_cnn(fake_splits, tmp_path, optimizer="rmsprop", **TINY)
    with pytest.raises(ValueError, match="unknown key"):
        train_from_config({"seed": 0, "paths": {"scenes": str(tmp_path), "models": str(tmp_path)},
                           "cnn": {"epochz": 3}})


def test_training_forward_equals_the_model_in_value_and_gradient():
    """Training runs ReLU -> max-pool as max-pool -> ReLU (cheaper); both must be the same
    function with the same parameter gradients, biases non-zero, negative windows included."""
    from lrpkit.models.cnn import SceneCNN
    from lrpkit.models.train import _train_forward

    torch.manual_seed(0)
    model = SceneCNN(6, width=4, mult=(1, 2, 4), input_size=24, dropout=0.0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.4)           # biases too; many all-negative pooling windows
    x = torch.randn(5, 3, 24, 24)
    y = model(x)
    assert (y != 0).all()
    y.sum().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    y2 = _train_forward(model, x)
    y2.sum().backward()
    torch.testing.assert_close(y2, y, rtol=0, atol=0)
    for g, r in zip((p.grad for p in model.parameters()), ref):
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-7)
    assert any(r.abs().sum() > 0 for r in ref)
