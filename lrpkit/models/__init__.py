"""Models: the bias-zoo scene CNN (trained here, Lapuschkin et al. 2016, App. E) and torchvision nets
loaded from local weight files.

::

    from lrpkit.models import train_cnn, load_cnn, evaluate_map, load_torchvision
    res = train_cnn("data/scenes", "data/models/cnn", cfg.cnn, epochs=12)  # hinge loss, 10 views
    model = load_cnn("data/models/cnn.pt")                      # eval mode, model.meta
    evaluate_map(model, "data/scenes", "test").ap               # per-class AP (xarray)
"""
from __future__ import annotations

from .cnn import SceneCNN, load_cnn, save_cnn
from .train import (TRAIN_DEFAULTS, TrainResult, checkpoint_name, cnn_params, evaluate_map,
                    hinge_loss, train_cnn)
from .zoo import ARCHS, load_torchvision

__all__ = ["SceneCNN", "save_cnn", "load_cnn", "train_cnn", "cnn_params", "evaluate_map",
           "hinge_loss", "TrainResult", "TRAIN_DEFAULTS", "checkpoint_name", "load_torchvision",
           "ARCHS"]
