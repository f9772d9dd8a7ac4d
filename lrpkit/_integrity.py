"""Damaged files: content records (sizes and SHA-256 of the files written) and the one error a
loader raises for a file it cannot read, naming the file and how to rebuild it.

::

    rec = files_record(folder, ["cnn.pt", "cnn_epoch*.pt"])   # {"cnn.pt": {"size": .., "sha256": ..}}
    problem = check_record(folder, rec)                      # None, or "cnn.pt: 12 bytes, 3610209 recorded"
    raise DamagedFile(path, "not a torch checkpoint", "lrpkit train --force --only cnn")
    image = open_rgb("data/scenes/JPEGImages/000001.jpg")    # DamagedFile for a truncated JPEG

A record checks sizes first (a truncated or extended file, at the cost of a ``stat``), then the
bytes' SHA-256 (a file overwritten in place); reading the 79 MB of the default scene set takes
about 0.15 s from the page cache, 2 s from disk.  Nothing heavy is imported here.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DamagedFile", "file_record", "files_record", "tree_record", "check_record",
           "short_reason", "open_rgb", "jpeg_looks_whole"]

#: the marker of a generated scene set (:data:`lrpkit.data.voc.SCENE_MARKER`; not imported: that
#: package loads numpy, PIL and xarray)
_SCENE_MARKER = "lrpkit_scenes.json"


class DamagedFile(ValueError):
    """A file that exists but cannot be read as what it should be (random bytes, text, a
    truncation).  The message names the file, the reason and how to rebuild it."""

    def __init__(self, path: str | os.PathLike, reason: str, rebuild: str | None = None) -> None:
        self.path, self.reason, self.rebuild = Path(path), reason, rebuild
        fix = f"rebuild it with `{rebuild}`" if rebuild else "replace it"
        super().__init__(f"{path} is damaged ({reason}); {fix}")


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """A one-line reason from a reader's exception: ``type: message``, without advice that does
    not apply (torch's ``weights_only=False`` paragraph keeps only its "WeightsUnpickler error")."""
    msg = str(exc)
    m = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\s*\n|Check the documentation|$)", msg, re.S)
    if m:
        msg = m.group(1)
    elif "weights_only" in msg:
        msg = "not a tensor checkpoint"
    msg = " ".join(msg.split()) or "no message"
    msg = msg if len(msg) <= limit else msg[:limit - 3] + "..."
    return f"{type(exc).__name__}: {msg}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_record(path: str | os.PathLike) -> dict:
    """``{"size": bytes, "sha256": hex}`` of one file."""
    path = Path(path)
    return {"size": path.stat().st_size, "sha256": _sha256(path)}


def files_record(folder: str | os.PathLike, patterns: Iterable[str]) -> dict[str, dict]:
    """:func:`file_record` of the files in ``folder`` matching any of ``patterns`` (glob, one
    level), keyed by name, sorted."""
    folder = Path(folder)
    names = sorted({p.name for pat in patterns for p in folder.glob(pat) if p.is_file()})
    return {n: file_record(folder / n) for n in names}


def tree_record(root: str | os.PathLike, exclude: Iterable[str] = ()) -> dict[str, list]:
    """``{relative path: [size, sha256]}`` of every file below ``root`` (``exclude``: relative
    paths left out, e.g. the record's own file)."""
    root = Path(root)
    skip = set(exclude)
    out: dict[str, list] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel not in skip:
                out[rel] = [p.stat().st_size, _sha256(p)]
    return out


def check_record(folder: str | os.PathLike, record: dict, content: bool = True) -> str | None:
    """The first problem of the files ``record`` lists below ``folder`` (``None``: all there,
    sizes and, with ``content``, SHA-256 as recorded).  ``record`` values are
    :func:`file_record` dicts or ``[size, sha256]`` pairs (:func:`tree_record`)."""
    folder = Path(folder)
    items = [(k, (v["size"], v["sha256"]) if isinstance(v, dict) else tuple(v)) for k, v in record.items()]
    for rel, (size, _) in items:          # sizes first: one stat per file
        try:
            got = (folder / rel).stat().st_size
        except FileNotFoundError:
            return f"{rel} is missing"
        except OSError as exc:
            return f"{rel}: {exc.strerror or exc}"
        if got != size:
            return f"{rel} is damaged ({got} bytes; {size} were written)"
    if content:
        for rel, (_, sha) in items:
            if _sha256(folder / rel) != sha:
                return f"{rel} is damaged (its bytes differ from those written: SHA-256 mismatch)"
    return None


def jpeg_looks_whole(path: str | os.PathLike) -> bool:
    """Whether a JPEG file starts with SOI and ends with EOI (``FF D8`` ... ``FF D9``): a
    truncated file does not.  Reads 4 bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(-2, os.SEEK_END)
            tail = f.read(2)
    except OSError:
        return False
    return head == b"\xff\xd8" and tail == b"\xff\xd9"


def _image_rebuild(path: Path) -> str | None:
    """``lrpkit data --force`` for an image of a generated scene set (``<root>/JPEGImages/x``)."""
    return "lrpkit data --force" if (path.parent.parent / _SCENE_MARKER).is_file() else None


def open_rgb(path: str | os.PathLike, rebuild: str | None = None):
    """The image file at ``path`` decoded as a PIL RGB image.

    Raises ``FileNotFoundError`` when it is missing and :class:`DamagedFile` when it cannot be
    decoded (a truncated JPEG, text ...), naming the file and (``rebuild``, by default
    ``lrpkit data --force`` inside a generated scene set) how to rebuild it.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DamagedFile(path, f"not a readable image: {short_reason(exc)}",
                          rebuild or _image_rebuild(path)) from None
