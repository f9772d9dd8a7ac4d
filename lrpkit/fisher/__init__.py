"""Fisher-vector classifiers and LRP for them (paper 000 Sec. 4-5, App. A-C; paper 001 Sec. 3).

Pipeline: :func:`dense_sift` -> PCA -> diagonal GMM -> improved Fisher vector -> one-vs-rest
linear SVMs (:class:`FisherVectorEncoder`, :class:`FisherVectorClassifier`).  Explanations:
:class:`FisherLRP` / :func:`feature_relevance` (per local feature, with frames) and the
registered method ``lrpkit.explain(clf, x, target, method="fv_lrp")``.
"""
from .sift import Frames, dense_sift, to_grey
from .encoder import (FisherVectorClassifier, FisherVectorEncoder, classifier_from_config, evaluate,
                      fit_fisher_from_config, fv_contributions, improve, load_fisher, load_split,
                      model_path, posteriors, raw_fisher_vector, save_fisher)
from .lrp import FisherLRP, FVRelevance, feature_relevance, pixel_map, project_to_sift

__all__ = ["Frames", "dense_sift", "to_grey", "FisherVectorEncoder", "FisherVectorClassifier",
           "classifier_from_config", "evaluate", "fit_fisher_from_config", "fv_contributions",
           "improve", "load_fisher", "load_split", "model_path", "posteriors", "raw_fisher_vector",
           "save_fisher", "FisherLRP", "FVRelevance", "feature_relevance", "pixel_map",
           "project_to_sift"]
