"""lrpkit: explain image classifiers and catch what they really rely on.

Public API::

    import lrpkit
    R = lrpkit.explain(model, x, target="pred", method="lrp")   # any registered method
    lrpkit.methods()                                            # the registry
    lrpkit.data, lrpkit.models, lrpkit.lrp, lrpkit.fisher, lrpkit.evaluate,
    lrpkit.results, lrpkit.viz, lrpkit.reports                  # subpackages (lazy)
"""
from __future__ import annotations

import importlib
import importlib.util

__version__ = "0.1.0"

from .explain import explain, explain_func, methods, register  # noqa: E402
from .config import load_config  # noqa: E402

_SUBMODULES = {"data", "models", "lrp", "fisher", "evaluate", "results", "viz", "reports",
               "pda", "fgvis", "widgets", "cli", "config"}
# only what exists: later capabilities (pda, fgvis, widgets) join once they are built
_SUBMODULES = {m for m in _SUBMODULES if importlib.util.find_spec(f"{__name__}.{m}") is not None}

__all__ = ["__version__", "explain", "explain_func", "methods", "register", "load_config",
           *sorted(_SUBMODULES)]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lrpkit' has no attribute {name!r}")
