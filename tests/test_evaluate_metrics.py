"""The one average precision (lrpkit.evaluate.metrics): hand-worked cases, VOC's difficult
pairs, classes without positives, and a cross-check against scikit-learn."""
import numpy as np
import pytest
import torch

from lrpkit.evaluate.metrics import ap_dataset, average_precision, mean_average_precision


def test_hand_worked_ap():
    # ranking P N P N: precision 1/1 at recall 1/2, 2/3 at recall 2/2 -> (1 + 2/3) / 2
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)
    # perfect ranking
    assert average_precision([0, 1, 1], [0.1, 0.5, 0.9]) == 1.0
    # {-1, 0, 1} labels: only > 0 is positive
    assert average_precision([1, -1, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)


def test_difficult_pairs_are_left_out():
    # the negative ranked second is "difficult": ranking becomes P P N -> AP 1
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1],
                             difficult=[False, True, False, False]) == 1.0
    # a difficult positive is not a positive either
    assert average_precision([1, 0, 1], [0.1, 0.8, 0.9], difficult=[True, False, False]) == 1.0


def test_classes_without_positives_are_nan_and_skipped():
    assert np.isnan(average_precision([0, 0, 0], [0.1, 0.2, 0.3]))
    assert np.isnan(average_precision([1, 0], [0.3, 0.1], difficult=[True, False]))
    assert average_precision([1, 1], [0.3, 0.1]) == 1.0          # all positive: AP 1
    Y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 0]])
    S = np.array([[0.9, 0.1, 0.2], [0.2, 0.5, 0.8], [0.4, 0.3, 0.1]])
    m, per = mean_average_precision(Y, S)
    assert np.isnan(per[1]) and per[0] == 1.0 and per[2] == 1.0 and m == 1.0
    m, per = mean_average_precision(np.zeros((3, 2)), S[:, :2])
    assert np.isnan(m) and np.isnan(per).all()


def test_matches_sklearn_and_accepts_tensors():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    Y = (rng.random((50, 4)) < 0.3).astype(int)
    S = rng.normal(size=(50, 4)) + Y
    m, per = mean_average_precision(torch.from_numpy(Y), torch.from_numpy(S))
    ref = [average_precision_score(Y[:, c], S[:, c]) for c in range(4)]
    np.testing.assert_allclose(per, ref)
    assert m == pytest.approx(np.mean(ref))


def test_ap_dataset_and_errors():
    Y = np.array([[1, 0], [0, 1], [1, 0]])
    S = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.3]])
    ds = ap_dataset(Y, S, ["cat", "dog"], split="test")
    assert list(ds["class"].values) == ["cat", "dog"] and ds.attrs["split"] == "test"
    assert float(ds["mAP"]) == ds.attrs["mAP"] == 1.0
    assert ds["n_positive"].values.tolist() == [2, 1]
    with pytest.raises(ValueError, match="same shape"):
        mean_average_precision(Y, S[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        average_precision([1, 0], [np.nan, 0.1])
    with pytest.raises(ValueError, match="difficult"):
        average_precision([1, 0], [0.2, 0.1], difficult=[True])
    with pytest.raises(ValueError, match="class names"):
        ap_dataset(Y, S, ["cat"])
