"""Average precision of multi-label scores (VOC's non-interpolated AP, difficult pairs left out).

The implementation and its definition (positives, VOC "difficult", classes without positives)
are in :mod:`lrpkit._average_precision`, below the model packages that score with it (CNN
training, the Fisher-vector classifier); this module is its public home.
"""
from __future__ import annotations

from .._average_precision import ap_dataset, average_precision, mean_average_precision

__all__ = ["average_precision", "mean_average_precision", "ap_dataset"]
