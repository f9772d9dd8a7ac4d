"""Data: the bias-zoo scene generator and the PASCAL VOC2007 reader/writer.

Public API::

    from lrpkit.data import generate_scenes, read_bias, VOCDataset
    root = generate_scenes("data/scenes", n_train=2000, n_val=500, n_test=1000, seed=0)
    ds = VOCDataset(root, "train")            # scene classes found from lrpkit_scenes.json
    image, target = ds[0]                     # PIL RGB, {"id", "labels", "boxes", ...}
    bias = read_bias(root)                    # one row per object: context, tag, colour ...
    generate_scenes("data/r", preset="realistic")   # VOC-like scale, clutter, occlusion, lighting
    img = montage("realistic", by="class")   # PIL image: example scenes per class / bias / realism

Python boxes are 0-based, half-open ``(x0, y0, x1, y1)``; the XML keeps VOC's 1-based boxes.
See :mod:`lrpkit.data.scenes` for the planted biases and the sidecar's columns.
"""
from __future__ import annotations

from .bias import bias_summary, planted_rates, realism_summary
from .montage import montage
from .realism import PRESETS, Preset, get_preset
from .scenes import (BACKGROUNDS, BIAS_RATES, CONTEXT, COUNTERFACTUAL_SPLITS, SCENE_CLASSES, Scene,
                     SceneLayout, SceneObject, generate_scenes, read_bias, render_scene, sample_layout,
                     scene_id)
from .voc import (SCENE_MARKER, VOC_CLASSES, VOCAnnotation, VOCDataset, VOCObject, parse_annotation,
                  resolve_voc_root, write_annotation, write_image_sets, write_voc)

__all__ = ["SCENE_CLASSES", "VOC_CLASSES", "BACKGROUNDS", "CONTEXT", "BIAS_RATES", "COUNTERFACTUAL_SPLITS",
           "SCENE_MARKER", "Scene", "SceneLayout", "SceneObject", "VOCAnnotation", "VOCDataset", "VOCObject",
           "generate_scenes", "read_bias", "bias_summary", "planted_rates", "realism_summary", "montage",
           "PRESETS", "Preset", "get_preset", "render_scene", "sample_layout", "scene_id", "parse_annotation",
           "resolve_voc_root", "write_annotation", "write_image_sets", "write_voc"]
