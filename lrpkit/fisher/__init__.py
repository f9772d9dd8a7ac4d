"""Fisher-vector classifiers and LRP for them (Lapuschkin et al. 2016, Sec. 4-5, App. A-C;
Bach et al. 2016, Sec. 3).

Pipeline: :func:`dense_sift` (:mod:`.sift`) -> PCA -> diagonal GMM -> improved Fisher vector
(:class:`FisherVectorEncoder`, :mod:`.encoder`) -> one-vs-rest linear SVMs
(:class:`FisherVectorClassifier`, :mod:`.classifier`).  Explanations (:mod:`.lrp`):
:class:`FisherLRP` / :func:`feature_relevance` (per local feature, with frames) and the
registered method ``lrpkit.explain(clf, x, target, method="fv_lrp")``.  Building the default
model from a config, fitting, saving and loading it: :mod:`lrpkit.pipeline`.
"""
from .sift import Frames, dense_sift, to_grey
from .encoder import FisherVectorEncoder, fv_contributions, improve, posteriors, raw_fisher_vector
from .classifier import FisherVectorClassifier, evaluate, load_fisher, save_fisher
from .lrp import (RULES, FisherLRP, FVRelevance, feature_relevance, parse_rule, pixel_map,
                  project_to_sift, rule_name)

__all__ = ["Frames", "dense_sift", "to_grey", "FisherVectorEncoder", "FisherVectorClassifier",
           "evaluate", "fv_contributions", "improve", "load_fisher", "posteriors",
           "raw_fisher_vector", "save_fisher", "RULES", "FisherLRP", "FVRelevance",
           "feature_relevance", "parse_rule", "pixel_map", "project_to_sift", "rule_name"]
