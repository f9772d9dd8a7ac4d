"""lrpkit.sources: a user's model files and data folders load as the config names them.

The fixtures are not lrpkit's: a VOC-layout devkit written by hand (no scene marker, no bias
side-car, a class outside VOC's 20), an image-folder tree with a box table, and a torchvision
ResNet-18 with random weights (non-zero head bias, trained batch-norm statistics) saved as a
state dict, as a whole model, as TorchScript and behind a ``module:function``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T

from lrpkit.config import load_config, project_root
from lrpkit.sources import (DatasetSource, ModelSource, class_index, load_dataset, load_model,
                            load_sources)

from userdata import (CLASSES, IMAGENET, SMALL, SPLITS, save_models,
                      write_devkit, write_folder)


@pytest.fixture(scope="module")
def devkit(tmp_path_factory) -> Path:
    return write_devkit(tmp_path_factory.mktemp("user"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("user"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_models(tmp_path_factory.mktemp("weights"))


def _reference(images, size=72, crop=64):
    """torchvision's own evaluation preprocessing, independently of lrpkit."""
    tf = T.Compose([T.Resize(size, antialias=True), T.CenterCrop(crop), T.ToTensor(),
                    T.Normalize(**IMAGENET)])
    return torch.stack([tf(im) for im in images])


def _voc(devkit, **kw):
    return load_dataset({"source": "voc", "root": str(devkit), "split": "test",
                         "classes": list(CLASSES), **kw})


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------
def test_voc_devkit_gives_ids_labels_and_the_xml_boxes(devkit):
    ds = _voc(devkit)
    assert isinstance(ds, DatasetSource) and ds.source == "voc" and ds.split == "test"
    assert ds.ids == SPLITS["test"] and ds.classes == CLASSES and ds.multilabel
    assert ds.name == "VOC2007" and ds.has_boxes
    # labels: non-difficult objects; 2009_000104 holds a difficult cat only -> ignored, not positive
    assert ds.labels.tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1]]
    assert ds.ignore[0].tolist() == [True, False, False] and not ds.ignore[1:].any()
    image, target = ds[1]                                   # 2009_000105
    assert image.size == (90, 64) == target["size"]
    assert target["names"] == ["dog", "cat"]
    np.testing.assert_array_equal(target["boxes"], [[2, 2, 88, 60], [39, 29, 50, 40]])  # 0-based
    assert ds.paths[2].name == "2009_000106.jpg"
    two = _voc(devkit, images=2)
    assert two.ids == SPLITS["test"][:2] and two.labels.shape == (2, 3)
    train = load_dataset({"source": "voc", "root": str(devkit / "VOC2007"), "split": "test",
                          "classes": list(CLASSES)}, split="train")
    assert train.ids == SPLITS["train"]


def test_image_folder_gives_one_hot_labels_and_csv_boxes(folder):
    ds = load_dataset({"source": "folder", "root": str(folder), "split": "test",
                       "boxes": str(folder / "boxes.csv")})
    assert ds.classes == ("cat", "dog", "kiwi") and not ds.multilabel and len(ds) == 6
    assert ds.ids == ["cat/0000", "cat/0001", "dog/0000", "dog/0001", "kiwi/0000", "kiwi/0001"]
    assert ds.labels.argmax(1).tolist() == [0, 0, 1, 1, 2, 2] and ds.labels.sum() == 6
    t = ds.target(0)
    assert t["names"] == ["cat", "dog"]
    np.testing.assert_array_equal(t["boxes"], [[1, 2, 30, 40], [5, 5, 10, 12]])
    assert ds.target(5)["names"] == ["kiwi"] and len(ds.boxes[3]) == 0   # train/dog/0001: train's
    train = load_dataset({"source": "folder", "root": str(folder), "split": "train",
                          "boxes": str(folder / "boxes.csv")})
    # rows relative to the split folder (cat/0000.jpg) name that file in every split
    assert [len(b) for b in train.boxes] == [2, 0, 0, 1, 0, 0]
    assert ds.image(2).size == ds.target(2)["size"] == (70 + 6 * 8, 50 + 4 * 8)
    # classes given: their order, and only those folders
    two = load_dataset({"source": "folder", "root": str(folder), "split": "train",
                        "classes": ["kiwi", "cat"]})
    assert two.classes == ("kiwi", "cat") and two.ids == ["cat/0000", "cat/0001", "kiwi/0000", "kiwi/0001"]
    assert two.labels.argmax(1).tolist() == [1, 1, 0, 0] and not two.has_boxes


def test_scene_set_loads_as_a_dataset(scenes_root):
    from lrpkit.data import SCENE_CLASSES

    ds = load_dataset({"source": "scenes", "root": str(scenes_root), "images": 5})
    assert len(ds) == 5 and ds.classes == tuple(SCENE_CLASSES) and ds.has_boxes and ds.voc is not None
    assert ds.labels.sum(1).min() >= 1


def test_dataset_errors_name_the_folder_key_and_class(devkit, folder, tmp_path):
    with pytest.raises(ValueError, match="kiwi.*dataset.classes"):
        load_dataset({"source": "voc", "root": str(devkit), "split": "test"})   # VOC's 20 by default
    with pytest.raises(FileNotFoundError, match="dataset.root.*nowhere"):
        load_dataset({"source": "voc", "root": str(tmp_path / "nowhere"), "split": "test"})
    with pytest.raises(FileNotFoundError, match="split file not found.*val.txt"):
        _voc(devkit, split="val")
    with pytest.raises(FileNotFoundError, match="dataset.split 'val'.*split: null"):
        load_dataset({"source": "folder", "root": str(folder), "split": "val"})
    with pytest.raises(FileNotFoundError, match=r"class folder\(s\) \['owl'\]"):
        load_dataset({"source": "folder", "root": str(folder), "split": "test", "classes": ["owl"]})
    with pytest.raises(ValueError, match="dataset.root is required"):
        load_dataset({"source": "folder"})
    with pytest.raises(ValueError, match="dataset.source must be one of scenes, voc, folder"):
        load_dataset({"source": "coco"})
    bad = tmp_path / "bad.csv"
    for text, msg in [("image,x0,y0,x1,y1,class\ncat/0000.jpg,0,0,5,5,owl\n", "bad.csv line 2: class 'owl'"),
                      ("image,x0,y0,x1,y1\nelsewhere/1.jpg,0,0,5,5\n", "no row of .*bad.csv names an image"),
                      ("image,x,y\ncat/0000.jpg,0,0\n", r"bad.csv lacks column\(s\)"),
                      ("image,x0,y0,x1,y1\ncat/0000.jpg,5,0,5,5\n", "bad.csv line 2: box")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=msg):
            load_dataset({"source": "folder", "root": str(folder), "split": "test", "boxes": str(bad)})


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def _specs(d: Path) -> dict[str, dict]:
    return {
        "state dict": {"source": "torchvision", "arch": "resnet18", "weights": str(d / "resnet18_sd.pt")},
        "whole model": {"source": "torchvision", "arch": "resnet18",
                        "weights": str(d / "resnet18_whole.pt")},
        "torchscript": {"source": "torchscript", "weights": str(d / "resnet18_ts.pt")},
        "python": {"source": "python", "entry": f"{d / 'mynets.py'}:build", "kwargs": {"num_classes": 3},
                   "weights": str(d / "resnet18_sd.pt")},
    }


@pytest.mark.parametrize("kind", ["state dict", "whole model", "torchscript", "python"])
def test_user_model_gives_the_original_logits(kind, saved, devkit):
    net, d = saved
    ds = _voc(devkit)
    images = ds.images()
    with torch.no_grad():
        want = net(_reference(images)).numpy()
    m = load_model({**_specs(d)[kind], **SMALL}, classes=ds.classes)
    assert isinstance(m, ModelSource) and m.classes == CLASSES and (m.size, m.crop) == (72, 64)
    assert m.output == "singlelabel" and m.prob == "softmax" and m.is_torch
    assert not m.model.training
    got = m.scores(images)
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.abs(want).max() > 0.1 and not np.allclose(want[0], want[1])   # a real comparison
    np.testing.assert_allclose(m.probabilities(got).sum(1), 1.0, rtol=1e-6)
    assert class_index(m, ds) == [0, 1, 2]


def test_multilabel_output_and_weights_enum_preprocessing(saved, devkit):
    from torchvision.models import get_weight

    net, d = saved
    spec = {**_specs(d)["state dict"], "output": "multilabel", "classes": list(CLASSES),
            "transforms": "ResNet18_Weights.IMAGENET1K_V1"}
    m = load_model(spec)
    assert (m.size, m.crop, m.resize) == (256, 224, "shorter") and m.prob == "sigmoid"
    ref = get_weight("ResNet18_Weights.IMAGENET1K_V1").transforms()   # metadata only: no download
    im = _voc(devkit).image(1)
    assert torch.allclose(m.transform(im), ref(im), atol=1e-6)
    s = m.scores([im])
    with torch.no_grad():
        np.testing.assert_allclose(s, net(ref(im)[None]).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.probabilities(s), 1 / (1 + np.exp(-s)), rtol=1e-6)
    # an explicit key wins over the enum's value
    assert load_model({**spec, "crop": 200}).crop == 200


def test_scene_cnn_keeps_its_checkpoint_preprocessing(tmp_path, devkit):
    from lrpkit.data.transforms import TestTransform
    from lrpkit.models import SceneCNN, save_cnn

    torch.manual_seed(0)
    cnn = SceneCNN(n_classes=3, width=4, mult=(1, 2), hidden=8, input_size=32, classes=CLASSES)
    with torch.no_grad():
        cnn.classifier[-1].bias.uniform_(-1, 1)
    save_cnn(cnn.eval(), tmp_path / "cnn" / "cnn.pt", meta={"size": 40})
    cfg = load_config({"paths": {"models": str(tmp_path)}})
    m = load_model(None, cfg)                           # the default: <paths.models>/cnn/cnn.pt
    assert m.source == "scene_cnn" and m.classes == CLASSES and m.output == "multilabel"
    assert (m.size, m.crop, m.resize) == (40, 32, "pad")
    images = _voc(devkit).images()
    x = torch.stack([TestTransform(40, 32)(im) for im in images])
    assert torch.equal(m.inputs(images), x)             # the notebooks' test view, bit for bit
    with torch.no_grad():
        np.testing.assert_allclose(m.scores(x), cnn(x).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="differ from the class order stored in .*cnn.pt"):
        load_model({"classes": ["dog", "cat", "kiwi"]}, cfg)
    with pytest.raises(FileNotFoundError, match="no scene CNN at .*lrpkit train"):
        load_model(None, load_config({"paths": {"models": str(tmp_path / "none")}}))


def test_model_errors_name_the_key_file_and_counts(saved, tmp_path):
    net, d = saved
    specs = _specs(d)
    with pytest.raises(FileNotFoundError, match="model.weights.*missing.pt"):
        load_model({**specs["state dict"], "weights": str(tmp_path / "missing.pt")})
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((d / "resnet18_sd.pt").read_bytes()[:5000])
    for kind in ("state dict", "python"):
        with pytest.raises(ValueError, match="model.weights.*corrupt.pt"):
            load_model({**specs[kind], "weights": str(corrupt)})
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a torchscript archive" * 10)
    with pytest.raises(ValueError, match="model.weights.*junk.pt.*TorchScript"):
        load_model({**specs["torchscript"], "weights": str(junk)})
    with pytest.raises(ValueError, match="model.arch must be one of .*'resnet19'"):
        load_model({**specs["state dict"], "arch": "resnet19"})
    with pytest.raises(ValueError, match="models\\[1\\].arch is required"):
        load_model({"source": "torchvision", "weights": "x.pt"}, where="models[1]")
    with pytest.raises(ValueError, match="model.weights: .*resnet18_sd.pt does not match torchvision vgg11"):
        load_model({**specs["state dict"], "arch": "vgg11"})
    with pytest.raises(ValueError, match="model.classes lists 4 classes but .*resnet18_sd.pt has 3 outputs"):
        load_model({**specs["state dict"], **SMALL, "classes": ["a", "b", "c", "d"]})
    with pytest.raises(ValueError, match="model.num_classes is 20 but .*resnet18_ts.pt has 3 outputs"):
        load_model({**specs["torchscript"], **SMALL, "num_classes": 20})
    with pytest.raises(ValueError, match="3 outputs but the dataset has 2 classes .*set model.classes"):
        load_model({**specs["torchscript"], **SMALL}, classes=["cat", "dog"])
    with pytest.raises(ValueError, match="does not fit the model of model.entry"):
        load_model({**specs["python"], "kwargs": {"num_classes": 5}})
    with pytest.raises(TypeError, match="returned a int, not a torch.nn.Module"):
        load_model({**specs["python"], "entry": f"{d / 'mynets.py'}:not_a_model", "kwargs": {},
                    "weights": None})
    with pytest.raises(ValueError, match="has no function 'nothing'"):
        load_model({**specs["python"], "entry": f"{d / 'mynets.py'}:nothing"})
    with pytest.raises(ImportError, match="model.entry 'no_such_module_x:build'"):
        load_model({"source": "python", "entry": "no_such_module_x:build"})
    with pytest.raises(ValueError, match="unknown key 'weigths' in config section 'model'"):
        load_model({"source": "torchscript", "weigths": "x.pt"})
    with pytest.raises(ValueError, match="model.crop \\(300\\) must not exceed model.size \\(256\\)"):
        load_model({**specs["state dict"], "crop": 300, "size": 256})
    with pytest.raises(ValueError, match="model.transforms: 'ResNet18_Weights.NOPE'"):
        load_model({**specs["state dict"], "transforms": "ResNet18_Weights.NOPE"})


def test_fisher_source_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Fisher-vector model at .*fv.joblib"):
        load_model({"source": "fisher"}, load_config({"paths": {"models": str(tmp_path)}}))
    bad = tmp_path / "fv.joblib"
    bad.write_bytes(b"garbage" * 20)
    with pytest.raises(ValueError, match="model.weights: .*fv.joblib is not a readable Fisher-vector"):
        load_model({"source": "fisher", "weights": str(bad)})


def test_relative_paths_are_relative_to_the_project(saved, tmp_path, monkeypatch):
    net, d = saved
    monkeypatch.setenv("LRPKIT_PROJECT", str(d))
    assert project_root() == d.resolve()
    m = load_model({"source": "torchscript", "weights": "resnet18_ts.pt", **SMALL})
    assert m.path == d.resolve() / "resnet18_ts.pt" and m.name == "resnet18_ts"


# ---------------------------------------------------------------------------------------------
# a config's sources
# ---------------------------------------------------------------------------------------------
def test_two_models_side_by_side_from_a_config(saved, devkit):
    net, d = saved
    specs = _specs(d)
    dataset = {"source": "voc", "root": str(devkit), "split": "test", "classes": list(CLASSES)}
    cfg = load_config({"models": [{**specs["state dict"], **SMALL, "name": "eager"},
                                  {**specs["torchscript"], **SMALL, "name": "scripted"}],
                       "dataset": dataset})
    src = load_sources(cfg)
    assert [m.name for m in src.models] == ["eager", "scripted"] and src.model is src.models[0]
    assert src.dataset.ids == SPLITS["test"]
    assert all(m.classes == CLASSES for m in src.models)    # taken from the dataset
    x = src.model.inputs(src.dataset.images())
    np.testing.assert_allclose(src.models[0].scores(x), src.models[1].scores(x), rtol=1e-4, atol=1e-4)
    same = load_config({"models": [{**specs["state dict"], **SMALL}, {**specs["whole model"], **SMALL}],
                        "dataset": dataset})
    with pytest.raises(ValueError, match="models\\[0\\] and models\\[1\\] are both named 'resnet18'"):
        load_sources(same)
    with pytest.raises(ValueError, match="models\\[1\\].source must be one of"):
        load_config({"models": [specs["state dict"], {"source": "onnx"}]})
    # one model: `model`; training split through the same keys
    one = load_sources(load_config({"model": {**specs["torchscript"], **SMALL}, "dataset": dataset}),
                       split="train")
    assert len(one.models) == 1 and one.dataset.ids == SPLITS["train"]


def test_class_index_reads_a_larger_model_at_the_dataset_classes(saved, devkit):
    net, d = saved
    ds = _voc(devkit)
    m = load_model({**_specs(d)["torchscript"], **SMALL, "classes": ["kiwi", "owl", "cat", "dog"][:3]})
    with pytest.raises(ValueError, match="no output for the dataset's class\\(es\\) \\['dog'\\]"):
        class_index(m, ds)
    m = load_model({**_specs(d)["torchscript"], **SMALL, "classes": ["dog", "kiwi", "cat"]})
    assert class_index(m, ds) == [2, 0, 1]


def test_default_config_still_analyses_the_scene_cnn_on_the_scenes():
    cfg = load_config("default")
    assert cfg.model.source == "scene_cnn" and cfg.dataset.source == "scenes" and list(cfg.models) == []
    assert cfg.dataset.split == "test" and cfg.model.weights is None
    assert load_config({}).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("name", ["torchvision_voc", "torchscript_folder", "side_by_side"])
def test_example_configs_are_valid(name):
    path = project_root() / "configs" / "examples" / f"{name}.yaml"
    cfg = load_config(path)
    if name == "side_by_side":
        assert [m.source for m in cfg.models] == ["torchvision", "python"]
        assert cfg.models[1].kwargs == {"num_classes": 20}
    else:
        assert cfg.model.source in ("torchvision", "torchscript") and cfg.model.weights
    assert cfg.dataset.source in ("voc", "folder") and cfg.dataset.root


def test_output_kind_defaults_to_the_datasets(saved, devkit, folder, tmp_path):
    """A config naming only the model file, its architecture and the data folder: on VOC the
    outputs are read as multi-label (sigmoid), on an image folder as single-label (softmax)."""
    _, d = saved
    model = {"source": "torchvision", "arch": "resnet18", "weights": str(d / "resnet18_sd.pt"), **SMALL}
    voc = load_sources({"model": model, "dataset": {"source": "voc", "root": str(devkit),
                                                    "classes": list(CLASSES)}})
    assert voc.model.output == "multilabel" and voc.model.prob == "sigmoid"
    assert voc.model.classes == voc.dataset.classes
    tree = load_sources({"model": model, "dataset": {"source": "folder", "root": str(folder)}})
    assert tree.model.output == "singlelabel" and tree.model.prob == "softmax"
    own = load_sources({"model": {**model, "output": "singlelabel"},
                        "dataset": {"source": "voc", "root": str(devkit), "classes": list(CLASSES)}})
    assert own.model.output == "singlelabel"                  # the config's own word wins


def test_torch_model_is_the_first_torch_one_or_a_named_error(saved, devkit):
    from lrpkit.sources import Sources

    _, d = saved
    src = load_sources({"models": [{"source": "torchvision", "arch": "resnet18",
                                    "weights": str(d / "resnet18_sd.pt"), "name": "a", **SMALL}],
                        "dataset": {"source": "voc", "root": str(devkit), "classes": list(CLASSES)}})
    assert src.torch_model("PDA") is src.models[0]
    with pytest.raises(ValueError, match="PDA needs a torch model; the config's models are $"):
        Sources(models=[], dataset=src.dataset).torch_model("PDA")
