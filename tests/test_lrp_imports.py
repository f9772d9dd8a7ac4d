"""Importing lrpkit and its LRP engine, and explaining with it, stays light: no scikit-learn,
SciPy or xarray (they cost seconds and belong to the Fisher-vector, PDA and results parts)."""
from __future__ import annotations

import subprocess
import sys

HEAVY = ("sklearn", "scipy", "xarray")

SCRIPT = """
import sys
import lrpkit, lrpkit.lrp
import torch
from torch import nn
net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 16, 3))
lrpkit.lrp.lrp(net, torch.randn(1, 3, 6, 6), 0, "epsilon_plus_flat")
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def test_lrp_does_not_import_heavy_libraries():
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(heavy=HEAVY)], capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"
