"""Read and write PASCAL VOC2007-style folders, as they lie on disk (nothing is downloaded).

Layout (``root`` is the folder holding these; its parent ``VOCdevkit`` or any folder with
a ``VOC2007`` subfolder is accepted too)::

    JPEGImages/<id>.jpg
    Annotations/<id>.xml                 VOC schema, boxes 1-based inclusive pixel coords
    ImageSets/Main/<split>.txt           one id per line
    ImageSets/Main/<class>_<split>.txt   "<id>  1" / "<id> -1" (VOC also uses 0: difficult only)
    lrpkit_scenes.json                   only in generated bias-zoo folders (scene marker)

Box convention in Python
------------------------
The XML files hold VOC's 1-based, inclusive pixel coordinates.  Everything this package hands
out in Python (``VOCDataset`` targets, ``read_bias``) uses **0-based, half-open pixel
coordinates** ``(x0, y0, x1, y1) = (xmin - 1, ymin - 1, xmax, ymax)``, so that
``array[y0:y1, x0:x1]`` is exactly the object's box and ``0 <= x0 < x1 <= width``.

Labels
------
An image is positive for a class when it holds at least one *non-difficult* object of that
class (VOC convention).  An image whose only objects of a class are marked difficult gets
label 0 for that class in ``VOCDataset.labels`` and ``True`` in ``VOCDataset.ignore``: VOC's
evaluation leaves such (image, class) pairs out, and so should ours (they are written as 0 in
VOC's class files).
"""
from __future__ import annotations

import json
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from .._integrity import open_rgb
from ..results import atomic_path

__all__ = ["VOC_CLASSES", "SCENE_MARKER", "VOCObject", "VOCAnnotation", "VOCDataset",
           "parse_annotation", "annotation_xml", "write_annotation", "write_image_sets",
           "write_voc", "resolve_voc_root"]

#: The 20 PASCAL VOC classes in the standard order.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")

#: File written at the root of generated scene folders; lists the classes (JSON).
SCENE_MARKER = "lrpkit_scenes.json"


@dataclass(frozen=True)
class VOCObject:
    """One annotated object; ``box`` is 0-based half-open ``(x0, y0, x1, y1)`` in pixels."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool = False
    truncated: bool = False
    pose: str = "Unspecified"


@dataclass(frozen=True)
class VOCAnnotation:
    """One parsed ``Annotations/<id>.xml``."""

    id: str
    filename: str
    size: tuple[int, int]  # (width, height)
    objects: tuple[VOCObject, ...] = field(default_factory=tuple)
    path: str = ""


# ----------------------------------------------------------------------------- reading

def resolve_voc_root(root: str | os.PathLike) -> Path:
    """The folder holding ``JPEGImages``/``Annotations``/``ImageSets`` for ``root``.

    ``root`` itself, else ``root/VOC2007`` or ``root/VOCdevkit/VOC2007``.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"VOC root not found: {root}")
    for cand in (root, root / "VOC2007", root / "VOCdevkit" / "VOC2007"):
        if (cand / "Annotations").is_dir() and (cand / "ImageSets").is_dir():
            return cand
    raise FileNotFoundError(
        f"{root} is not a VOC2007 folder: no Annotations/ and ImageSets/ in it "
        f"(nor in {root / 'VOC2007'})")


def _text(elem: ET.Element, tag: str, path: Path) -> str:
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"annotation {path}: missing <{tag}>")
    return child.text.strip()


def _number(elem: ET.Element, tag: str, path: Path) -> float:
    s = _text(elem, tag, path)
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"annotation {path}: <{tag}> is not a number: {s!r}") from None


def parse_annotation(path: str | os.PathLike) -> VOCAnnotation:
    """Parse and validate one VOC annotation file.

    Raises ``FileNotFoundError`` when missing and ``ValueError`` (naming the file) when the
    XML does not parse, lacks a field, or holds a box outside the image or a degenerate box
    (``xmax < xmin``; VOC boxes are inclusive, so ``xmin == xmax`` is one pixel wide).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise ValueError(f"annotation {path} does not parse as XML: {exc}") from None
    ann = tree.getroot()
    if ann.tag != "annotation":
        raise ValueError(f"annotation {path}: root element is <{ann.tag}>, not <annotation>")
    size = ann.find("size")
    if size is None:
        raise ValueError(f"annotation {path}: missing <size>")
    width, height = int(_number(size, "width", path)), int(_number(size, "height", path))
    if width <= 0 or height <= 0:
        raise ValueError(f"annotation {path}: image size {width}x{height} is not positive")
    objects = []
    for obj in ann.findall("object"):
        name = _text(obj, "name", path)
        bb = obj.find("bndbox")
        if bb is None:
            raise ValueError(f"annotation {path}: object {name!r} has no <bndbox>")
        xmin, ymin, xmax, ymax = (_number(bb, t, path) for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise ValueError(f"annotation {path}: degenerate box for {name!r}: "
                             f"({xmin}, {ymin}, {xmax}, {ymax})")
        if xmin < 1 or ymin < 1 or xmax > width or ymax > height:
            raise ValueError(f"annotation {path}: box ({xmin}, {ymin}, {xmax}, {ymax}) of {name!r} "
                             f"lies outside the {width}x{height} image (VOC boxes are 1-based)")
        flag = lambda t: (obj.findtext(t) or "0").strip() not in ("0", "")  # noqa: E731
        objects.append(VOCObject(name=name, box=(xmin - 1, ymin - 1, xmax, ymax),
                                 difficult=flag("difficult"), truncated=flag("truncated"),
                                 pose=(obj.findtext("pose") or "Unspecified").strip()))
    filename = (ann.findtext("filename") or f"{path.stem}.jpg").strip()
    return VOCAnnotation(id=path.stem, filename=filename, size=(width, height),
                         objects=tuple(objects), path=str(path))


_PARSE_CACHE: dict[tuple[str, int, int], VOCAnnotation] = {}


def _parse_cached(path: Path) -> VOCAnnotation:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None
    key = (str(path), st.st_mtime_ns, st.st_size)
    ann = _PARSE_CACHE.get(key)
    if ann is None:
        ann = parse_annotation(path)
        if len(_PARSE_CACHE) > 200_000:
            _PARSE_CACHE.clear()
        _PARSE_CACHE[key] = ann
    return ann


def _read_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            ids.append(line.split()[0])
    return ids


class VOCDataset:
    """A VOC2007 split as an indexable dataset: ``ds[i] -> (image, target)``.

    Parameters
    ----------
    root : folder holding ``JPEGImages``, ``Annotations``, ``ImageSets`` (or its parent).
    split : name of ``ImageSets/Main/<split>.txt`` (``train``, ``val``, ``trainval``, ``test``,
        and for generated scenes also ``test_swapped``, ``test_untagged``).
    classes : class names (order = label columns).  ``None``: the classes listed in the scene
        marker ``lrpkit_scenes.json`` when present, else the 20 ``VOC_CLASSES``.
    transform : applied to the PIL RGB image in ``__getitem__``.

    ``target`` is ``{"id", "labels" (C,) float32 multi-hot, "boxes" (M, 4) float32 0-based
    half-open (x0, y0, x1, y1), "names" list[str], "difficult" (M,) bool,
    "size" (width, height)}``.  ``labels`` (N, C) and ``ignore`` (N, C) are computed from the
    annotations alone (all XML parsed once, at construction; parses are cached per file).
    Objects whose name is a VOC class but not in ``classes`` stay in boxes/names and add no
    label; any other name raises ``ValueError`` naming it and the file.
    """

    def __init__(self, root: str | os.PathLike, split: str = "trainval",
                 classes: Sequence[str] | None = None,
                 transform: Callable[[Image.Image], Any] | None = None) -> None:
        self.root = resolve_voc_root(root)
        self.split = split
        self.transform = transform
        self.classes: tuple[str, ...] = tuple(classes) if classes is not None else self._default_classes()
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise ValueError(f"classes must be non-empty and unique, got {self.classes}")
        split_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            per_class = tuple(f"{c}_" for c in (*self.classes, *VOC_CLASSES))
            have = sorted(p.stem for p in split_file.parent.glob("*.txt")
                          if not p.stem.startswith(per_class))
            raise FileNotFoundError(f"split file not found: {split_file} (splits here: {have})")
        self.ids: list[str] = _read_ids(split_file)
        self.annotations: list[VOCAnnotation] = [self._load(i) for i in self.ids]
        self.labels, self.ignore = self._label_matrix()
        names = {o.name for a in self.annotations for o in a.objects}
        known = {*VOC_CLASSES, *self._default_classes()}
        unknown = [c for c in self.classes if c not in names and c not in known]
        if unknown and self.ids:
            warnings.warn(f"VOCDataset({self.root}, {split!r}): class(es) {unknown} are neither "
                          f"VOC nor scene classes and no object here has them (a typo in "
                          f"classes=?); their labels are all 0", stacklevel=2)

    # -- construction helpers
    def _default_classes(self) -> tuple[str, ...]:
        marker = self.root / SCENE_MARKER
        if marker.is_file():
            try:
                return tuple(json.loads(marker.read_text())["classes"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"scene marker {marker} is unreadable: {exc}") from None
        return VOC_CLASSES

    def _load(self, image_id: str) -> VOCAnnotation:
        xml = self.root / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"image id {image_id!r} listed in split {self.split!r} "
                                    f"has no annotation file {xml}")
        ann = _parse_cached(xml)
        jpg = self.root / "JPEGImages" / f"{image_id}.jpg"
        if not jpg.is_file():
            raise FileNotFoundError(f"image id {image_id!r} listed in split {self.split!r} "
                                    f"has no image file {jpg}")
        known = set(self.classes) | set(VOC_CLASSES)
        for obj in ann.objects:
            if obj.name not in known:
                raise ValueError(f"annotation {xml}: unknown class name {obj.name!r} "
                                 f"(classes: {', '.join(self.classes)})")
        return ann

    def _label_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        col = {c: j for j, c in enumerate(self.classes)}
        labels = np.zeros((len(self.ids), len(self.classes)), np.float32)
        seen = np.zeros(labels.shape, bool)
        for i, ann in enumerate(self.annotations):
            for obj in ann.objects:
                j = col.get(obj.name)
                if j is None:
                    continue
                seen[i, j] = True
                if not obj.difficult:
                    labels[i, j] = 1.0
        return labels, seen & (labels == 0)

    # -- access
    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, i: int) -> Path:
        """Path of the JPEG of item ``i``."""
        return self.root / "JPEGImages" / f"{self.ids[i]}.jpg"

    def target(self, i: int) -> dict[str, Any]:
        """The target dict of item ``i`` (no image decoded)."""
        ann = self.annotations[i]
        boxes = np.array([o.box for o in ann.objects], np.float32).reshape(-1, 4)
        return {"id": ann.id, "labels": self.labels[i].copy(), "boxes": boxes,
                "names": [o.name for o in ann.objects],
                "difficult": np.array([o.difficult for o in ann.objects], bool),
                "size": ann.size}

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        i = i % n
        path = self.image_path(i)
        image = open_rgb(path)   # DamagedFile naming a truncated / unreadable file
        target = self.target(i)
        if image.size != tuple(target["size"]):
            raise ValueError(f"image {path} is {image.size[0]}x{image.size[1]} but its annotation "
                             f"says {target['size'][0]}x{target['size'][1]}")
        if self.transform is not None:
            image = self.transform(image)
        return image, target

    def __repr__(self) -> str:
        return (f"VOCDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)})")


# ----------------------------------------------------------------------------- writing

def annotation_xml(image_id: str, size: tuple[int, int], objects: Iterable[VOCObject],
                   folder: str = "VOC2007", database: str = "lrpkit") -> str:
    """VOC XML text for one image; ``objects`` boxes are 0-based half-open (written 1-based)."""
    w, h = size
    lines = ["<annotation>", f"\t<folder>{escape(folder)}</folder>",
             f"\t<filename>{escape(image_id)}.jpg</filename>",
             f"\t<source>\n\t\t<database>{escape(database)}</database>\n\t</source>",
             f"\t<size>\n\t\t<width>{int(w)}</width>\n\t\t<height>{int(h)}</height>\n"
             f"\t\t<depth>3</depth>\n\t</size>", "\t<segmented>0</segmented>"]
    for o in objects:
        x0, y0, x1, y1 = o.box
        lines += ["\t<object>", f"\t\t<name>{escape(o.name)}</name>",
                  f"\t\t<pose>{escape(o.pose)}</pose>",
                  f"\t\t<truncated>{int(o.truncated)}</truncated>",
                  f"\t\t<difficult>{int(o.difficult)}</difficult>",
                  "\t\t<bndbox>",
                  f"\t\t\t<xmin>{_fmt(x0 + 1)}</xmin>\n\t\t\t<ymin>{_fmt(y0 + 1)}</ymin>",
                  f"\t\t\t<xmax>{_fmt(x1)}</xmax>\n\t\t\t<ymax>{_fmt(y1)}</ymax>",
                  "\t\t</bndbox>", "\t</object>"]
    lines.append("</annotation>\n")
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{float(v):.1f}"


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_annotation(path: str | os.PathLike, image_id: str, size: tuple[int, int],
                     objects: Iterable[VOCObject], folder: str = "VOC2007",
                     database: str = "lrpkit") -> Path:
    """Write ``Annotations/<id>.xml`` atomically (no timestamps: same input, same bytes)."""
    path = Path(path)
    _write_text(path, annotation_xml(image_id, size, objects, folder, database))
    return path


def write_image_sets(root: str | os.PathLike, splits: Mapping[str, Sequence[str]],
                     objects_by_id: Mapping[str, Sequence[VOCObject]],
                     classes: Sequence[str]) -> None:
    """Write ``ImageSets/Main/<split>.txt`` and ``<class>_<split>.txt`` (1 / -1 / 0 labels)."""
    main = Path(root) / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        _write_text(main / f"{split}.txt", "".join(f"{i}\n" for i in ids))
        for c in classes:
            rows = []
            for i in ids:
                objs = [o for o in objects_by_id[i] if o.name == c]
                lab = 1 if any(not o.difficult for o in objs) else (0 if objs else -1)
                rows.append(f"{i} {lab:2d}\n")
            _write_text(main / f"{c}_{split}.txt", "".join(rows))


def write_voc(root: str | os.PathLike,
              samples: Iterable[tuple[str, Image.Image | np.ndarray, Sequence[VOCObject]]],
              splits: Mapping[str, Sequence[str]], classes: Sequence[str] = VOC_CLASSES,
              quality: int = 90) -> Path:
    """Write a small VOC2007 folder: ``samples`` are ``(id, image, objects)``.

    Images (PIL or HxWx3 uint8) become ``JPEGImages/<id>.jpg`` (fixed quality, no metadata),
    objects ``Annotations/<id>.xml``; ``splits`` maps split names to ids.  Returns ``root``.
    """
    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    objects_by_id: dict[str, Sequence[VOCObject]] = {}
    for image_id, image, objects in samples:
        im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
        with atomic_path(root / "JPEGImages" / f"{image_id}.jpg") as tmp:
            im.convert("RGB").save(tmp, format="JPEG", quality=quality)
        write_annotation(root / "Annotations" / f"{image_id}.xml", image_id, im.size, objects)
        objects_by_id[image_id] = objects
    write_image_sets(root, splits, objects_by_id, classes)
    return root
