"""VOCDataset / VOC writers: round trips on generated scenes and a real-VOC-style fixture, errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrpkit.data import (SCENE_CLASSES, VOC_CLASSES, VOCDataset, VOCObject, parse_annotation, read_bias,
                         write_voc)


# ----------------------------------------------------------------------------- scenes round trip

@pytest.mark.parametrize("split", ["train", "val", "trainval", "test", "test_swapped", "test_untagged"])
def test_scenes_round_trip(scenes_root, split):
    ds = VOCDataset(scenes_root, split)
    assert ds.classes == SCENE_CLASSES  # from the scene marker
    ids = (scenes_root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    assert ds.ids == ids and len(ds) == len(ids) > 0
    assert ds.labels.dtype == np.float32 and ds.labels.shape == (len(ds), len(SCENE_CLASSES))
    bias = read_bias(scenes_root)
    for j, c in enumerate(SCENE_CLASSES):  # class files agree with labels
        rows = (scenes_root / "ImageSets" / "Main" / f"{c}_{split}.txt").read_text().splitlines()
        assert [r.split()[0] for r in rows] == ids
        assert np.array_equal(np.array([int(r.split()[1]) for r in rows]) == 1, ds.labels[:, j] == 1)
        assert set(int(r.split()[1]) for r in rows) <= {1, -1}
    for i, image_id in enumerate(ds.ids):
        t = ds.target(i)
        rows = bias[bias.image_id == image_id].sort_values("object_index")
        assert t["names"] == list(rows["class"])
        assert np.array_equal(t["boxes"], rows[["xmin", "ymin", "xmax", "ymax"]].to_numpy(np.float32))
        expect = np.isin(np.array(SCENE_CLASSES), rows["class"]).astype(np.float32)
        assert np.array_equal(t["labels"], expect)
        w, h = t["size"]
        b = t["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert not t["difficult"].any()
    image, target = ds[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == tuple(target["size"])
    assert target["id"] == ds.ids[0]


def test_scenes_trainval_and_transform(scenes_root):
    tv = VOCDataset(scenes_root, "trainval", transform=lambda im: np.asarray(im))
    assert tv.ids == VOCDataset(scenes_root, "train").ids + VOCDataset(scenes_root, "val").ids
    arr, t = tv[-1]
    assert isinstance(arr, np.ndarray) and arr.shape == (t["size"][1], t["size"][0], 3)
    with pytest.raises(IndexError):
        tv[len(tv)]


def test_scenes_parent_folder_and_explicit_classes(scenes_root, tmp_path):
    parent = tmp_path / "devkit"
    parent.mkdir()
    (parent / "VOC2007").symlink_to(scenes_root, target_is_directory=True)
    ds = VOCDataset(parent, "val")
    assert ds.root == parent / "VOC2007" and len(ds) == 8
    voc20 = VOCDataset(scenes_root, "val", classes=VOC_CLASSES)
    assert voc20.labels.shape == (8, 20)
    for c in SCENE_CLASSES:
        assert np.array_equal(voc20.labels[:, VOC_CLASSES.index(c)], ds.labels[:, SCENE_CLASSES.index(c)])


# ----------------------------------------------------------------------------- real-VOC-style fixture

def test_voc_fixture_20_classes(voc_root):
    ds = VOCDataset(voc_root.parent.parent, "trainval")  # VOCdevkit/ -> VOCdevkit/VOC2007
    assert ds.root == voc_root and ds.classes == VOC_CLASSES and len(ds) == 4
    col = VOC_CLASSES.index
    assert ds.labels[0, [col("dog"), col("person")]].tolist() == [1, 1] and ds.labels[0].sum() == 2
    assert ds.labels[1, col("cat")] == 1 and ds.labels[1, col("dog")] == 0   # dog only difficult
    assert ds.ignore[1, col("dog")] and not ds.ignore[1, col("cat")]
    assert ds.labels[2].sum() == 0 and ds.ignore[2, col("car")]               # difficult-only image
    image, t = ds[1]
    assert image.size == (48, 64) and t["size"] == (48, 64)
    assert t["names"] == ["cat", "dog"] and t["difficult"].tolist() == [False, True]
    assert t["boxes"].dtype == np.float32 and t["boxes"].tolist() == [[4, 4, 40, 60], [0, 50, 10, 64]]
    xml = (voc_root / "Annotations" / "000002.xml").read_text()
    assert "<xmin>5</xmin>" in xml and "<xmax>40</xmax>" in xml and "<pose>Left</pose>" in xml
    rows = dict(r.split() for r in (voc_root / "ImageSets/Main/car_trainval.txt").read_text().splitlines())
    assert rows == {"000001": "-1", "000002": "-1", "000003": "0", "000004": "-1"}
    ann = parse_annotation(voc_root / "Annotations" / "000004.xml")
    assert ann.objects[0].truncated and ann.size == (64, 48)


def test_subset_classes_keep_other_objects(voc_root):
    ds = VOCDataset(voc_root, "train", classes=["cat", "dog"])
    assert ds.labels.tolist() == [[0, 1], [1, 0]]
    assert ds.target(0)["names"] == ["dog", "person"]  # person kept in boxes, no label column


# ----------------------------------------------------------------------------- errors

@pytest.fixture
def voc_copy(voc_root, tmp_path):
    dst = tmp_path / "VOC2007"
    shutil.copytree(voc_root, dst)
    return dst


def _xml(root: Path, image_id: str = "000001") -> Path:
    return root / "Annotations" / f"{image_id}.xml"


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VOCDataset(tmp_path / "nowhere", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a VOC2007 folder"):
        VOCDataset(tmp_path / "empty", "train")


def test_missing_split(voc_copy):
    with pytest.raises(FileNotFoundError, match="test.txt") as e:
        VOCDataset(voc_copy, "test")
    assert "'train'" in str(e.value) and "car_train" not in str(e.value)  # the splits, not class files


def test_class_typo_warns(voc_root):
    with pytest.warns(UserWarning, match="hrose"):
        ds = VOCDataset(voc_root, "train", classes=["cat", "hrose"])
    assert ds.labels[:, 1].sum() == 0


def test_missing_annotation_or_image(voc_copy):
    _xml(voc_copy, "000002").unlink()
    with pytest.raises(FileNotFoundError, match="000002.xml"):
        VOCDataset(voc_copy, "train")
    (voc_copy / "JPEGImages" / "000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000003.jpg"):
        VOCDataset(voc_copy, "val")


def test_annotation_does_not_parse(voc_copy):
    _xml(voc_copy).write_text("<annotation><size>")
    with pytest.raises(ValueError, match="000001.xml"):
        VOCDataset(voc_copy, "train")


@pytest.mark.parametrize("old,new,msg", [
    ("<xmax>30</xmax>", "<xmax>65</xmax>", "outside"),
    ("<xmin>1</xmin>", "<xmin>0</xmin>", "outside"),
    ("<ymax>20</ymax>", "<ymax>0</ymax>", "degenerate"),
    ("<name>dog</name>", "<name>unicorn</name>", "unicorn"),
    ("<width>64</width>", "<width>x</width>", "width"),
])
def test_bad_annotation_content(voc_copy, old, new, msg):
    p = _xml(voc_copy)
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError, match=msg) as err:
        VOCDataset(voc_copy, "train")
    assert "000001.xml" in str(err.value)


def test_image_size_mismatch(voc_copy):
    Image.new("RGB", (10, 10)).save(voc_copy / "JPEGImages" / "000001.jpg")
    ds = VOCDataset(voc_copy, "train")
    with pytest.raises(ValueError, match="000001.jpg"):
        ds[0]


def test_write_voc_accepts_pil(tmp_path):
    root = write_voc(tmp_path / "v", [("a", Image.new("RGB", (8, 6)), [VOCObject("bus", (0, 0, 8, 6))])],
                     {"train": ["a"]})
    ds = VOCDataset(root, "train")
    assert ds.labels[0, VOC_CLASSES.index("bus")] == 1 and ds.target(0)["boxes"].tolist() == [[0, 0, 8, 6]]
