"""Heatmap evaluation: does a heatmap point at what the model really uses?

* :mod:`.resampling` - local-feature resampling for Fisher-vector heatmaps (paper 000,
  App. D, Algorithm 1; the ``A`` / ``V`` measures of Fig. 7).
* :mod:`.context` - the outside-inside relevance ratio (paper 000 eq. 11) and the share of
  positive relevance inside a box.
"""
from .context import box_mask, box_share, box_to_crop, outside_inside_ratio, positive_part
from .resampling import (DEFAULT_RULES, feature_traces, parse_rule, perturbation_area,
                         relevance_order, resample_fv, resampling_experiment, sample_gmm,
                         summarize_traces, switch_steps)

__all__ = ["box_mask", "box_share", "box_to_crop", "outside_inside_ratio", "positive_part", "DEFAULT_RULES",
           "feature_traces", "parse_rule", "perturbation_area", "relevance_order", "resample_fv",
           "resampling_experiment", "sample_gmm", "summarize_traces", "switch_steps"]
