"""Heatmap evaluation: does a heatmap point at what the model really uses?

* :mod:`.resampling` - local-feature resampling for Fisher-vector heatmaps (paper 000,
  App. D, Algorithm 1; the ``A`` / ``V`` measures of Fig. 7).
* :mod:`.context` - the outside-inside relevance ratio (paper 000 eq. 11) and the share of
  positive relevance inside a box.
* :mod:`.perturbation` - region perturbation and AOPC (paper 002 eq. 9-12), the random baseline,
  deletion / insertion (Petsiuk et al. 2018); :mod:`.road` - ROAD's noisy linear imputation
  (Rong et al. 2022), batched; :mod:`.complexity` - PNG / JPEG size and entropy (paper 002 Fig. 5).
"""
from .metrics import ap_dataset, average_precision, mean_average_precision
from .context import box_mask, box_share, box_to_crop, outside_inside_ratio, positive_part
from .resampling import (DEFAULT_RULES, feature_traces, parse_rule, perturbation_area,
                         relevance_order, resample_fv, resampling_experiment, sample_gmm,
                         summarize_traces, switch_steps)

__all__ = ["box_mask", "box_share", "box_to_crop", "outside_inside_ratio", "positive_part", "DEFAULT_RULES",
           "feature_traces", "parse_rule", "perturbation_area", "relevance_order", "resample_fv",
           "resampling_experiment", "sample_gmm", "summarize_traces", "switch_steps"]
__all__ += ["average_precision", "mean_average_precision", "ap_dataset"]
from .perturbation import (PAPER_002_METHODS, aopc_from_scores, compare_methods, deletion_insertion,
                           gaussian_blur, region_perturbation, removal_ranks, scaled_region_size)
from .bootstrap import bootstrap_ci, bootstrap_da
from .road import noisy_linear_impute, noisy_linear_impute_reference
from .complexity import complexity, heatmap_to_uint8, shannon_entropy

__all__ += ["region_perturbation", "compare_methods", "deletion_insertion", "removal_ranks",
            "aopc_from_scores", "gaussian_blur", "noisy_linear_impute",
            "noisy_linear_impute_reference", "complexity", "heatmap_to_uint8", "shannon_entropy",
            "PAPER_002_METHODS", "scaled_region_size", "bootstrap_ci", "bootstrap_da"]
