"""Heatmap evaluation: does a heatmap point at what the model really uses?

* :mod:`.resampling` - local-feature resampling for Fisher-vector heatmaps (Lapuschkin et al.
  2016, App. D, Algorithm 1; the ``A`` / ``V`` measures of Fig. 7).
* :mod:`.context` - the outside-inside relevance ratio (Lapuschkin et al. 2016, eq. 11) and the
  share of positive relevance inside a box.
* :mod:`.perturbation` - region perturbation and AOPC (Samek et al. 2017, eq. 9-12), the random baseline,
  deletion / insertion (Petsiuk et al. 2018); :mod:`.road` - ROAD's noisy linear imputation
  (Rong et al. 2022), batched; :mod:`.complexity` - PNG / JPEG size and entropy (Samek et al. 2017, Fig. 5).
* :mod:`.intervals` - bootstrap (paired over images), Wilson and AP intervals, verdicts
  ("resolved", "reproduced / not resolved / contradicted") and the findings table of a report;
  :mod:`.twin_drop` - the class-score drop on counterfactual twins next to the AP drop.
"""
from .metrics import ap_dataset, average_precision, mean_average_precision
from .context import box_mask, box_share, box_to_crop, outside_inside_ratio, positive_part
from .resampling import (DEFAULT_RULES, feature_traces, parse_rule, perturbation_area,
                         relevance_order, resample_fv, resampling_experiment, sample_gmm,
                         summarize_traces, switch_steps)

from .perturbation import (SAMEK2017_METHODS, aopc_from_scores, compare_methods, deletion_insertion,
                           gaussian_blur, region_perturbation, removal_ranks, scaled_region_size)
from .bootstrap import bootstrap_ci, bootstrap_da
from .intervals import (Interval, ap_interval, attach_interval, bootstrap_interval, claim_verdict,
                        difference_verdict, finding, findings_markdown, findings_table,
                        interval_dataset, interval_frame, paired_ap_interval, paired_interval,
                        paired_interval_dataset, ratio_interval, resample_interval,
                        wilson_interval)
from .twin_drop import score_drop, twin_drop
from .findings import Findings, findings_from_dataset
from .road import noisy_linear_impute, noisy_linear_impute_reference
from .complexity import complexity, heatmap_to_uint8, shannon_entropy

__all__ = ["box_mask", "box_share", "box_to_crop", "outside_inside_ratio", "positive_part", "DEFAULT_RULES",
           "feature_traces", "parse_rule", "perturbation_area", "relevance_order", "resample_fv",
           "resampling_experiment", "sample_gmm", "summarize_traces", "switch_steps"]
__all__ += ["average_precision", "mean_average_precision", "ap_dataset"]

__all__ += ["region_perturbation", "compare_methods", "deletion_insertion", "removal_ranks",
            "aopc_from_scores", "gaussian_blur", "noisy_linear_impute",
            "noisy_linear_impute_reference", "complexity", "heatmap_to_uint8", "shannon_entropy",
            "SAMEK2017_METHODS", "scaled_region_size", "bootstrap_ci", "bootstrap_da"]
__all__ += ["Interval", "bootstrap_interval", "paired_interval", "wilson_interval", "ap_interval",
            "paired_ap_interval", "difference_verdict", "claim_verdict", "interval_dataset",
            "paired_interval_dataset", "attach_interval", "interval_frame", "finding",
            "findings_table", "findings_markdown", "ratio_interval", "resample_interval",
            "score_drop", "twin_drop", "Findings", "findings_from_dataset"]
