"""Shared fixtures: tiny data folders built on the fly (nothing is downloaded).

* ``scenes_root``: a small generated bias-zoo set (24 train, 8 val, 30 test + twins, seed 0).
* ``voc_root``: a tiny real-VOC-style ``VOCdevkit/VOC2007`` folder with a few of the 20 VOC
  classes, a difficult object and a difficult-only image; returns the ``VOC2007`` folder.
"""
from __future__ import annotations

import numpy as np
import pytest

from lrpkit.runtime import tune_malloc

tune_malloc()  # as the lrpkit command does: torch's large blocks reuse the heap


@pytest.fixture(scope="session")
def scenes_root(tmp_path_factory):
    from lrpkit.data import generate_scenes

    root = tmp_path_factory.mktemp("bias_zoo") / "scenes"
    return generate_scenes(root, n_train=24, n_val=8, n_test=30, seed=0, progress=False, n_jobs=1)


def _voc_samples():
    from lrpkit.data import VOCObject

    rng = np.random.default_rng(0)
    img = lambda w, h: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)  # noqa: E731
    return [
        ("000001", img(64, 48), [VOCObject("dog", (0, 0, 30, 20)), VOCObject("person", (10, 5, 64, 48))]),
        ("000002", img(48, 64), [VOCObject("cat", (4, 4, 40, 60), pose="Left"),
                                 VOCObject("dog", (0, 50, 10, 64), difficult=True)]),
        ("000003", img(64, 48), [VOCObject("car", (2, 2, 20, 20), difficult=True)]),  # difficult only
        ("000004", img(64, 48), [VOCObject("tvmonitor", (30, 10, 60, 40), truncated=True)]),
    ]


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory):
    from lrpkit.data import write_voc

    root = tmp_path_factory.mktemp("voc") / "VOCdevkit" / "VOC2007"
    write_voc(root, _voc_samples(), {"train": ["000001", "000002"], "val": ["000003", "000004"],
                                     "trainval": ["000001", "000002", "000003", "000004"]})
    return root
