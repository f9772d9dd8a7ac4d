"""bias_summary against hand-made sidecars and a generated set."""
import numpy as np
import pandas as pd
import pytest

from lrpkit.data import bias_summary, planted_rates


def _row(image_id, split, cls, *, ctx=True, tag=0, n=1, orient="landscape", hue=48.0):
    return dict(image_id=image_id, split=split, source_id=image_id, context_match=ctx, tag=tag,
                n_objects=n, orientation=orient, **{"class": cls}, hue=hue)


def test_rates_on_a_hand_made_sidecar():
    df = pd.DataFrame([
        _row("a", "train", "horse", tag=1),
        _row("b", "train", "horse", tag=0, ctx=False),
        _row("c", "train", "bus", hue=50.0, n=2), _row("c", "train", "car", hue=200.0, n=2),
        _row("d", "train", "bus", hue=120.0, orient="portrait"),
        _row("e", "train", "car", hue=10.0, tag=1),
    ])
    ds = bias_summary(df).sel(split="train")
    m = ds["measured"].to_series()
    assert m["context_match"] == pytest.approx(4 / 5)
    assert m["tag_given_horse"] == pytest.approx(1 / 2)
    assert m["tag_given_no_horse"] == pytest.approx(1 / 3)
    assert m["two_objects"] == pytest.approx(1 / 5)       # image c counted once
    assert m["landscape"] == pytest.approx(4 / 5)
    assert m["bus_yellow"] == pytest.approx(1 / 2)        # hue 120 is not yellow
    # two car hues in two different 30-degree bins: entropy log 2 / log 12
    assert m["car_hue_uniformity"] == pytest.approx(np.log(2) / np.log(12))
    assert int(ds["n"].sel(statistic="tag_given_horse")) == 2
    assert float(ds["stderr"].sel(statistic="context_match")) == pytest.approx(np.sqrt(0.8 * 0.2 / 5))


def test_texture_auc_by_hand():
    rows = [dict(_row(i, "train", c), texture_energy=e)
            for i, (c, e) in enumerate([("sheep", 15.0), ("sheep", 16.0), ("horse", 1.0),
                                        ("aeroplane", 17.0), ("car", np.nan)])]
    m = bias_summary(pd.DataFrame(rows)).sel(split="train")["measured"].to_series()
    # sheep beat the horse in 2 of 2 pairs and the aeroplane in 0 of 2; the car has no core
    assert m["texture_sheep_auc"] == pytest.approx(0.5)
    assert np.isnan(bias_summary(pd.DataFrame([_row("a", "train", "horse")]))["measured"]
                    .sel(split="train", statistic="texture_sheep_auc"))


def test_planted_rates_follow_the_counterfactual_splits():
    assert planted_rates("test")["context_match"] == pytest.approx(0.88)
    assert planted_rates("test_swapped")["context_match"] == pytest.approx(0.2)
    assert planted_rates("test_untagged")["tag_given_horse"] == 0.0


def test_generated_set_carries_the_planted_biases(scenes_root):
    ds = bias_summary(scenes_root)
    assert list(ds.split.values) == ["train", "val", "test", "test_swapped", "test_untagged"]
    m = ds["measured"]
    assert float(m.sel(split="test_untagged", statistic="tag_given_horse")) == 0.0
    assert float(m.sel(split="test", statistic="bus_yellow")) == 1.0
    # the wool texture separates sheep from every other object class
    assert float(m.sel(split="train", statistic="texture_sheep_auc")) > 0.95
    # on 30 test images, a context rate within 4 standard errors of 0.88
    assert abs(float(m.sel(split="test", statistic="context_match")) - 0.88) < 4 * np.sqrt(0.88 * 0.12 / 30)


def test_unknown_split_is_named():
    df = pd.DataFrame([_row("a", "train", "horse")])
    with pytest.raises(ValueError, match="nope"):
        bias_summary(df, splits=["nope"])
