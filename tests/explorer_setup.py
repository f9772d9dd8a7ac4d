"""A tiny explorer set-up shared by test_widgets and test_browser: a random-weight scene CNN
(seeded), its config, and a small results file to browse."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def make_explorer_config(root: Path, scenes_root: Path) -> Path:
    import torch
    import xarray as xr

    from lrpkit.data import VOCDataset
    from lrpkit.models.cnn import SceneCNN, save_cnn
    from lrpkit.results import save_dataset

    classes = list(VOCDataset(scenes_root, "test").classes)
    torch.manual_seed(0)
    model = SceneCNN(n_classes=len(classes), width=4, mult=(1, 2), hidden=16, dropout=0.0, input_size=32,
                     classes=classes)
    save_cnn(model, root / "models" / "cnn" / "cnn.pt", meta={"size": 40, "input_size": 32})
    save_cnn(model, root / "models" / "cnn" / "cnn_epoch000.pt", meta={"size": 40, "input_size": 32})
    reports = root / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ds = xr.Dataset({"relevance": (("method", "image", "y", "x"), rng.normal(size=(2, 3, 8, 8))),
                     "score": (("image", "step"), rng.normal(size=(3, 5)))},
                    coords={"method": ["lrp", "sensitivity"], "image": ["a", "b", "c"]})
    save_dataset(ds, reports / "demo.nc")
    cfg = root / "explorer.yaml"
    cfg.write_text(f"seed: 0\npaths:\n  scenes: {scenes_root}\n  models: {root / 'models'}\n"
                   f"  reports: {reports}\n")
    return cfg
