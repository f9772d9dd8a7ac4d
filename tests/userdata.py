"""A user's model and data, not lrpkit's: a VOC-layout devkit written by hand (no scene marker, no
bias side-car, a class outside VOC's 20), an image-folder tree with a box table, and a torchvision
ResNet-18 with random weights (non-zero head bias, trained batch-norm statistics) saved as a state
dict, as a whole model, as TorchScript and behind a ``module:function``.

Shared by the source, notebook and install tests (``tests/test_sources.py``,
``tests/test_user_reports.py``).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASSES = ("cat", "dog", "kiwi")          # kiwi: not a VOC class
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
SMALL = {"size": 72, "crop": 64}          # fast forwards; the enum test covers 256 / 224

# id -> (width, height, [(name, xmin, ymin, xmax, ymax (1-based, inclusive), difficult)])
DEVKIT = {
    "2009_000101": (80, 60, [("cat", 5, 4, 40, 50, 0), ("kiwi", 50, 10, 78, 58, 0)]),
    "2009_000102": (60, 90, [("dog", 1, 1, 60, 45, 0)]),
    "2009_000103": (100, 70, [("kiwi", 20, 20, 60, 60, 0), ("dog", 70, 5, 95, 30, 1)]),
    "2009_000104": (72, 72, [("cat", 10, 10, 30, 30, 1)]),                 # difficult only
    "2009_000105": (90, 64, [("dog", 3, 3, 88, 60, 0), ("cat", 40, 30, 50, 40, 0)]),
    "2009_000106": (64, 96, [("kiwi", 2, 50, 60, 95, 0)]),
}
SPLITS = {"train": ["2009_000101", "2009_000102", "2009_000103"],
          "test": ["2009_000104", "2009_000105", "2009_000106", "2009_000101"]}


def image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    a = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) % 64 * 4], -1)
    a = a + rng.normal(0, 20, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def voc_xml(image_id: str, w: int, h: int, objects) -> str:
    objs = "".join(
        f"\t<object>\n\t\t<name>{n}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>{d}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{x0}</xmin>\n\t\t\t<ymin>{y0}</ymin>\n"
        f"\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for n, x0, y0, x1, y1, d in objects)
    return (f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{image_id}.jpg</filename>\n"
            f"\t<source>\n\t\t<database>The VOC2007 Database</database>\n\t\t<annotation>PASCAL VOC2007"
            f"</annotation>\n\t\t<image>flickr</image>\n\t</source>\n\t<owner>\n\t\t<name>someone</name>\n"
            f"\t</owner>\n\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n"
            f"\t</size>\n\t<segmented>0</segmented>\n{objs}</annotation>\n")


def write_devkit(where: Path) -> Path:
    """``<where>/VOCdevkit`` holding ``VOC2007/`` (JPEGImages, Annotations, ImageSets/Main)."""
    top = Path(where) / "VOCdevkit"
    root = top / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for k, (image_id, (w, h, objs)) in enumerate(DEVKIT.items()):
        image(w, h, k).save(root / "JPEGImages" / f"{image_id}.jpg", quality=92)
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, w, h, objs))
    for split, ids in SPLITS.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return top


def write_folder(where: Path) -> Path:
    """``<where>/birds/{train,test}/<class>/*.jpg`` and ``boxes.csv``."""
    root = Path(where) / "birds"
    k = 0
    for split, n in (("train", 2), ("test", 2)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for j in range(n):
                image(70 + 6 * k, 50 + 4 * k, 100 + k).save(root / split / c / f"{j:04d}.jpg")
                k += 1
    (root / "boxes.csv").write_text(
        "image,x0,y0,x1,y1,class\n"
        "cat/0000.jpg,1,2,30,40,cat\n"
        "cat/0000.jpg,5,5,10,12,dog\n"        # a second object of another class
        "test/kiwi/0001.jpg,0,0,20,20,kiwi\n"   # relative to the root or to the split folder
        "train/dog/0001.jpg,3,4,9,9,dog\n"     # a train image: not in the test split
    )
    return root


def resnet18_net(n: int = 3) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(7)
    net = torchvision.models.resnet18(weights=None, num_classes=n)
    net.train()
    with torch.no_grad():  # batch-norm statistics that are not the identity
        for _ in range(3):
            net(torch.randn(4, 3, 64, 64) * 2 + 0.5)
        net.fc.bias.uniform_(-1.0, 1.0)
    return net.eval()


def save_models(d: Path):
    """The same ResNet-18 as a state dict, a whole model, TorchScript and a module:function."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    net = resnet18_net()
    torch.save(net.state_dict(), d / "resnet18_sd.pt")
    torch.save(net, d / "resnet18_whole.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(net), d / "resnet18_ts.pt")
    (d / "mynets.py").write_text(
        "import torchvision\n\n\ndef build(num_classes=1000):\n"
        "    return torchvision.models.resnet18(weights=None, num_classes=num_classes)\n\n\n"
        "def not_a_model():\n    return 42\n")
    return net, d




def write_user_project(where: Path, *, model: str = "state dict") -> Path:
    """A project folder (``configs/user.yaml``) analysing the ResNet-18 on the devkit at smoke
    scale: the config names only the model file, its architecture and the data folder (plus
    the tests' small budgets from ``configs/smoke.yaml`` and a 64-px input for speed).
    Returns the YAML path; ``paths.models`` / ``paths.reports`` lie inside ``where``."""
    import yaml

    where = Path(where)
    devkit = write_devkit(where)
    _, d = save_models(where / "weights")
    smoke = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml").read_text())
    specs = {"state dict": {"source": "torchvision", "arch": "resnet18",
                            "weights": str(d / "resnet18_sd.pt")},
             "torchscript": {"source": "torchscript", "weights": str(d / "resnet18_ts.pt")}}
    cfg = {**smoke,
           "paths": {"scenes": str(where / "no-scenes"), "models": str(where / "models"),
                     "reports": str(where / "reports")},
           # the model: its file and architecture (classes and the multi-label output kind come
           # from the VOC dataset), and a small input for speed
           "model": {**specs[model], **SMALL},
           "dataset": {"source": "voc", "root": str(devkit), "split": "test",
                       "train_split": "train", "classes": list(CLASSES)}}
    (where / "configs").mkdir(exist_ok=True)
    path = where / "configs" / "user.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
