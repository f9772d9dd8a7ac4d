"""lrpkit.evaluate.box_samples: the (image, boxes) pairs the context ratio mu is measured on."""
import numpy as np
import pytest

from lrpkit.evaluate.box_samples import class_box_samples
from lrpkit.sources import load_dataset
from userdata import write_devkit, write_folder


@pytest.fixture(scope="module")
def devkit(tmp_path_factory):
    return load_dataset({"source": "voc", "root": str(write_devkit(tmp_path_factory.mktemp("bs"))),
                         "split": "test", "classes": ["cat", "dog", "kiwi"]})


def _ids(ds, picks):
    return {c: [ds.ids[i] for i, _ in v] for c, v in picks.items()}


def test_each_class_gets_its_own_boxes_and_no_difficult_only_image(devkit):
    picks = class_box_samples(devkit, None)
    # 2009_000104's only cat is difficult (label 0): not a cat image; 105 and 101 are, in dataset order
    assert _ids(devkit, picks) == {"cat": ["2009_000105", "2009_000101"], "dog": ["2009_000105"],
                                   "kiwi": ["2009_000106", "2009_000101"]}
    i, boxes = picks["cat"][0]
    assert devkit.ids[i] == "2009_000105"
    # only the cat box of an image that also holds a dog; VOC's 1-based inclusive box -> 0-based half-open
    np.testing.assert_array_equal(boxes, [[39, 29, 50, 40]])
    assert boxes.dtype == np.float32 and picks["dog"][0][1].shape == (1, 4)


def test_n_draws_at_random_per_class_with_the_seed(devkit):
    one = class_box_samples(devkit, 1, seed=0)
    assert all(len(v) == 1 for v in one.values())
    assert _ids(devkit, one) == _ids(devkit, class_box_samples(devkit, 1, seed=0))
    drawn = {tuple(_ids(devkit, class_box_samples(devkit, 1, seed=s))["cat"]) for s in range(12)}
    assert drawn == {("2009_000105",), ("2009_000101",)}    # both cat images get drawn
    with pytest.raises(ValueError, match="n must be"):
        class_box_samples(devkit, 0)


def test_a_folder_without_boxes_gives_empty_lists_and_with_boxes_its_csv_rows(tmp_path):
    root = write_folder(tmp_path)
    plain = load_dataset({"source": "folder", "root": str(root), "split": "test"})
    assert class_box_samples(plain, 3) == {"cat": [], "dog": [], "kiwi": []}
    boxed = load_dataset({"source": "folder", "root": str(root), "split": "test",
                          "boxes": str(root / "boxes.csv")})
    picks = class_box_samples(boxed, 3)
    assert _ids(boxed, picks) == {"cat": ["cat/0000"], "dog": [], "kiwi": ["kiwi/0001"]}
    # cat/0000.jpg also has a dog box, but the image is not labelled dog (one class per folder image)
    np.testing.assert_array_equal(picks["cat"][0][1], [[1, 2, 30, 40]])
