"""Where a configuration's own data and models live: ``paths.scenes``, ``paths.models`` and the
files lrpkit trains there (the scene CNN, the Fisher-vector model).

The one place that knows these paths.  :mod:`lrpkit.pipeline` (building, loading, staleness)
re-exports them; :mod:`lrpkit.sources` reads them for the ``scene_cnn`` / ``fisher`` model
sources and the ``scenes`` dataset without importing the pipeline (which builds on the sources).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import as_config, resolve_path

__all__ = ["scenes_root", "models_root", "cnn_dir", "cnn_path", "fisher_path"]


def scenes_root(cfg: Any) -> Path:
    """``paths.scenes`` as an absolute path (the generated scene set, VOC2007 layout)."""
    return resolve_path(as_config(cfg), "scenes")


def models_root(cfg: Any) -> Path:
    """``paths.models`` as an absolute path."""
    return resolve_path(as_config(cfg), "models")


def cnn_dir(cfg: Any) -> Path:
    """``<paths.models>/cnn``: ``cnn.pt``, ``cnn_epoch*.pt``, ``history.nc``, ``test_map.nc``."""
    return models_root(cfg) / "cnn"


def cnn_path(cfg: Any, epoch: int | None = None) -> Path:
    """The final CNN ``cnn.pt``, or the checkpoint after ``epoch`` epochs."""
    if epoch is None:
        return cnn_dir(cfg) / "cnn.pt"
    from .models.train import checkpoint_name

    return cnn_dir(cfg) / checkpoint_name(epoch)


def fisher_path(cfg: Any) -> Path:
    """``<paths.models>/fisher/fv.joblib``."""
    return models_root(cfg) / "fisher" / "fv.joblib"
