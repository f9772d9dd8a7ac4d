"""lrpkit: explain image classifiers and catch what they really rely on.

Public API::

    import lrpkit
    R = lrpkit.explain(model, x, target="pred", method="lrp")   # any registered method
    lrpkit.methods()                                            # the registry
    lrpkit.data, lrpkit.models, lrpkit.lrp, lrpkit.fisher, lrpkit.evaluate,
    lrpkit.results, lrpkit.viz, lrpkit.batch                    # subpackages (lazy)
"""
from __future__ import annotations

import importlib
import sys
import types

from ._version import __version__
from .config import load_config

# the explainers import torch (seconds): loaded on first use, so that ``import lrpkit`` in the
# report runner, the CLI and the config tools stays light
_LAZY = {"explain": "explain", "explain_func": "explain", "methods": "explain", "register": "explain"}

_SUBMODULES = {"data", "models", "lrp", "fisher", "evaluate", "results", "viz", "batch",
               "pda", "fgvis", "widgets", "cli", "config", "sources", "params", "references"}

__all__ = ["__version__", "explain", "explain_func", "methods", "register", "load_config",
           *sorted(_SUBMODULES)]


class _Package(types.ModuleType):
    """``lrpkit.explain`` is the function: the import system binds the submodule of the same
    name to the package when it is first imported, and this keeps the function there."""

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lrpkit' has no attribute {name!r}")
