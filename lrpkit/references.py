"""The works lrpkit implements or follows, one entry each, and the short cites used in its text.

Docstrings, notebooks and reports cite by author and year ("Samek et al. 2017, eq. 12"); this
module is the bibliography behind those cites::

    >>> from lrpkit.references import REFERENCES, cite
    >>> cite("samek2017evaluating")
    'Samek et al. 2017'
    >>> REFERENCES["bach2016controlling"].venue
    'IEEE International Conference on Image Processing (ICIP)'

The first five entries are the papers lrpkit is built from (the ``seed`` flag).  The ICIP 2016
paper's first author published it as S. Bach (he now publishes as S. Lapuschkin), so it is
*Bach et al. 2016*, while *Lapuschkin et al. 2016* is the CVPR 2016 paper.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Reference", "REFERENCES", "SEED_PAPERS", "cite", "full_cite"]


@dataclass(frozen=True)
class Reference:
    """One bibliography entry.  ``authors`` are ``"F. Surname"`` strings in publication order."""

    key: str
    authors: tuple[str, ...]
    year: int
    title: str
    venue: str
    short: str
    details: str = ""
    seed: bool = False

    @property
    def surnames(self) -> tuple[str, ...]:
        """Authors' surnames (the part after the initials), e.g. ``("Zeiler", "Fergus")``."""
        return tuple(a.split(". ")[-1] for a in self.authors)

    def __str__(self) -> str:
        tail = f", {self.details}" if self.details else ""
        return f'{", ".join(self.authors)}. "{self.title}." {self.venue}{tail}, {self.year}.'


def _ref(key: str, authors: str, year: int, title: str, venue: str, details: str = "",
         short: str = "", seed: bool = False) -> Reference:
    names = tuple(a.strip() for a in authors.split(";"))
    surnames = [a.split(". ")[-1] for a in names]
    if not short:
        if len(names) == 1:
            short = f"{surnames[0]} {year}"
        elif len(names) == 2:
            short = f"{surnames[0]} & {surnames[1]} {year}"
        else:
            short = f"{surnames[0]} et al. {year}"
    return Reference(key, names, year, title, venue, short, details, seed)


_ENTRIES = [
    # --- the five papers lrpkit is built from (/work/shared/papers) ---
    _ref("lapuschkin2016analyzing",
         "S. Lapuschkin; A. Binder; G. Montavon; K.-R. Müller; W. Samek", 2016,
         "Analyzing Classifiers: Fisher Vectors and Deep Neural Networks",
         "IEEE Conference on Computer Vision and Pattern Recognition (CVPR)", "pp. 2912-2920",
         seed=True),
    _ref("bach2016controlling",
         "S. Bach; A. Binder; K.-R. Müller; W. Samek", 2016,
         "Controlling explanatory heatmap resolution and semantics via decomposition depth",
         "IEEE International Conference on Image Processing (ICIP)", "pp. 2271-2275", seed=True),
    _ref("samek2017evaluating",
         "W. Samek; A. Binder; G. Montavon; S. Lapuschkin; K.-R. Müller", 2017,
         "Evaluating the visualization of what a deep neural network has learned",
         "IEEE Transactions on Neural Networks and Learning Systems", "28(11):2660-2673",
         seed=True),
    _ref("zhou2018efficient",
         "K. Zhou; B. Kainz", 2018,
         "Efficient Image Evidence Analysis of CNN Classification Results",
         "arXiv preprint", "arXiv:1801.01693", seed=True),
    _ref("wagner2019interpretable",
         "J. Wagner; J. M. Köhler; T. Gindele; L. Hetzel; J. T. Wiedemer; S. Behnke", 2019,
         "Interpretable and Fine-Grained Visual Explanations for Convolutional Neural Networks",
         "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
         "pp. 9097-9107", seed=True),
    # --- further works the code follows or compares with ---
    _ref("bach2015pixel",
         "S. Bach; A. Binder; G. Montavon; F. Klauschen; K.-R. Müller; W. Samek", 2015,
         "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance "
         "Propagation", "PLOS ONE", "10(7):e0130140"),
    _ref("montavon2017explaining",
         "G. Montavon; S. Lapuschkin; A. Binder; W. Samek; K.-R. Müller", 2017,
         "Explaining nonlinear classification decisions with deep Taylor decomposition",
         "Pattern Recognition", "65:211-222"),
    _ref("montavon2019layer",
         "G. Montavon; A. Binder; S. Lapuschkin; W. Samek; K.-R. Müller", 2019,
         "Layer-Wise Relevance Propagation: An Overview",
         "Explainable AI: Interpreting, Explaining and Visualizing Deep Learning (Springer LNCS "
         "11700)", "pp. 193-209"),
    _ref("shrikumar2016not",
         "A. Shrikumar; P. Greenside; A. Shcherbina; A. Kundaje", 2016,
         "Not Just a Black Box: Learning Important Features Through Propagating Activation "
         "Differences", "arXiv preprint", "arXiv:1605.01713"),
    _ref("simonyan2014deep",
         "K. Simonyan; A. Vedaldi; A. Zisserman", 2014,
         "Deep Inside Convolutional Networks: Visualising Image Classification Models and "
         "Saliency Maps", "International Conference on Learning Representations (ICLR), "
         "workshop track"),
    _ref("zintgraf2017visualizing",
         "L. M. Zintgraf; T. S. Cohen; T. Adel; M. Welling", 2017,
         "Visualizing Deep Neural Network Decisions: Prediction Difference Analysis",
         "International Conference on Learning Representations (ICLR)"),
    _ref("zeiler2014visualizing",
         "M. D. Zeiler; R. Fergus", 2014,
         "Visualizing and Understanding Convolutional Networks",
         "European Conference on Computer Vision (ECCV)", "pp. 818-833"),
    _ref("springenberg2015striving",
         "J. T. Springenberg; A. Dosovitskiy; T. Brox; M. Riedmiller", 2015,
         "Striving for Simplicity: The All Convolutional Net",
         "International Conference on Learning Representations (ICLR), workshop track"),
    _ref("selvaraju2017gradcam",
         "R. R. Selvaraju; M. Cogswell; A. Das; R. Vedantam; D. Parikh; D. Batra", 2017,
         "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
         "IEEE International Conference on Computer Vision (ICCV)", "pp. 618-626"),
    _ref("fong2017interpretable",
         "R. C. Fong; A. Vedaldi", 2017,
         "Interpretable Explanations of Black Boxes by Meaningful Perturbation",
         "IEEE International Conference on Computer Vision (ICCV)", "pp. 3429-3437"),
    _ref("petsiuk2018rise",
         "V. Petsiuk; A. Das; K. Saenko", 2018,
         "RISE: Randomized Input Sampling for Explanation of Black-box Models",
         "British Machine Vision Conference (BMVC)"),
    _ref("rong2022consistent",
         "Y. Rong; T. Leemann; V. Borisov; G. Kasneci; E. Kasneci", 2022,
         "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
         "International Conference on Machine Learning (ICML)", "PMLR 162:18770-18795"),
    _ref("everingham2010pascal",
         "M. Everingham; L. Van Gool; C. K. I. Williams; J. Winn; A. Zisserman", 2010,
         "The PASCAL Visual Object Classes (VOC) Challenge",
         "International Journal of Computer Vision", "88(2):303-338"),
    _ref("perronnin2010improving",
         "F. Perronnin; J. Sánchez; T. Mensink", 2010,
         "Improving the Fisher Kernel for Large-Scale Image Classification",
         "European Conference on Computer Vision (ECCV)", "pp. 143-156"),
    _ref("sanchez2013image",
         "J. Sánchez; F. Perronnin; T. Mensink; J. Verbeek", 2013,
         "Image Classification with the Fisher Vector: Theory and Practice",
         "International Journal of Computer Vision", "105(3):222-245"),
    _ref("vedaldi2008vlfeat",
         "A. Vedaldi; B. Fulkerson", 2008,
         "VLFeat: An Open and Portable Library of Computer Vision Algorithms",
         "software, https://www.vlfeat.org"),
    _ref("arras2017explaining",
         "L. Arras; G. Montavon; K.-R. Müller; W. Samek", 2017,
         "Explaining Recurrent Neural Network Predictions in Sentiment Analysis",
         "Workshop on Computational Approaches to Subjectivity, Sentiment and Social Media "
         "Analysis (WASSA, EMNLP)", "pp. 159-168"),
    _ref("ali2022xai",
         "A. Ali; T. Schnake; O. Eberle; G. Montavon; K.-R. Müller; L. Wolf", 2022,
         "XAI for Transformers: Better Explanations through Conservative Propagation",
         "International Conference on Machine Learning (ICML)", "PMLR 162:435-451"),
    # --- statistics of the evaluations (lrpkit.evaluate.intervals) ---
    _ref("efron1993introduction",
         "B. Efron; R. J. Tibshirani", 1993,
         "An Introduction to the Bootstrap", "Chapman & Hall/CRC", "Monographs on Statistics and "
         "Applied Probability 57"),
    _ref("agresti1998approximate",
         "A. Agresti; B. A. Coull", 1998,
         "Approximate is Better than \"Exact\" for Interval Estimation of Binomial Proportions",
         "The American Statistician", "52(2):119-126"),
]

#: key -> :class:`Reference`, in the order above (seed papers first).
REFERENCES: dict[str, Reference] = {r.key: r for r in _ENTRIES}

#: The keys of the five papers lrpkit is built from.
SEED_PAPERS: tuple[str, ...] = tuple(r.key for r in _ENTRIES if r.seed)


def _get(key: str) -> Reference:
    try:
        return REFERENCES[key]
    except KeyError:
        close = [k for k in REFERENCES if k[:5] == key[:5]] or sorted(REFERENCES)
        raise KeyError(f"unknown reference key {key!r}; known keys include: "
                       f"{', '.join(close[:8])}") from None


def cite(key: str, where: str = "") -> str:
    """Short cite of ``key``: ``cite("samek2017evaluating", "eq. 12")`` ->
    ``"Samek et al. 2017, eq. 12"``."""
    short = _get(key).short
    return f"{short}, {where}" if where else short


def full_cite(key: str) -> str:
    """The whole entry as one line: authors, title, venue, details and year."""
    return str(_get(key))
