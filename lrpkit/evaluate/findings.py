"""A report's "Findings": each paper claim it tests, generated from the report's own numbers.

A notebook collects its findings while it computes and shows them in one cell tagged
``findings``; :func:`lrpkit.batch.render.export_html` moves that cell to the top of the rendered
report, right after the title, so every report opens with what it found::

    F = Findings("04_aopc_evaluation")
    F.add("LRP a2b1 AOPC above random (Samek et al. 2017, Fig. 4)",
          paired_interval(aopc_lrp, aopc_random), direction=">", paper="above random")
    ...
    F.show()                       # in the cell tagged "findings"
    results = F.attach(results)    # finding_* variables in the results Dataset

Every row's verdict (reproduced / not resolved / contradicted) follows from its interval
(:func:`lrpkit.evaluate.intervals.claim_verdict`); a claim the configured model or data cannot
test (no boxes, no planted bias, no checkpoints) is kept as "not tested" with the reason, so a
report on a user's model says what it could not check.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from .intervals import Finding, Interval, finding, findings_markdown, findings_table

__all__ = ["Findings", "NOT_TESTED", "findings_from_dataset"]

NOT_TESTED = "not tested"
_FIELDS = ("claim", "paper", "value", "low", "high", "n", "verdict", "reason", "percent")
_INTRO = ("Generated from this run's numbers. Each row is a claim of the paper quoted, the paper's "
          "value, this run's value with its 95 % interval and sample size n, and the verdict that "
          "follows from the interval: **reproduced** (the interval lies on the paper's side), "
          "**contradicted** (on the other side), **not resolved** (it covers the reference at this n), "
          "**not tested** (this model or data cannot test it).")


class Findings:
    """The findings of one report, in the order they were added.

    ``report``: the notebook's name (stored in the results' attrs).
    """

    def __init__(self, report: str) -> None:
        self.report = str(report)
        self.rows: list[Finding] = []

    def add(self, claim: str, interval: Interval, *, direction: Any, paper: Any = "",
            reference: float = 0.0, reason: str = "", value: float | None = None,
            percent: bool = False) -> Finding:
        """One claim checked against ``interval`` (see :func:`lrpkit.evaluate.intervals.finding`);
        returns the row."""
        if not isinstance(interval, Interval):
            raise TypeError(f"finding {claim!r}: interval must be an lrpkit.evaluate.intervals.Interval "
                            f"(bootstrap_interval, paired_interval, wilson_interval, ...), got "
                            f"{type(interval).__name__}")
        row = finding(claim, interval, direction=direction, paper=paper, reference=reference,
                      reason=reason, value=value, percent=percent)
        self.rows.append(row)
        return row

    def not_tested(self, claim: str, why: str, *, paper: Any = "") -> Finding:
        """A claim this run cannot test (``why``: what the model or data lacks)."""
        if not str(why).strip():
            raise ValueError(f"finding {claim!r}: say why it is not tested")
        row = Finding(str(claim), str(paper), math.nan, math.nan, math.nan, 0, NOT_TESTED,
                      str(why))
        self.rows.append(row)
        return row

    # ------------------------------------------------------------------ views
    def table(self, digits: int = 3) -> Any:
        """The rows as a pandas DataFrame (:func:`findings_table`)."""
        return findings_table(self.rows, digits)

    def markdown(self, digits: int = 3) -> str:
        """``## Findings``, a short legend and the table, as Markdown."""
        if not self.rows:
            return "## Findings\n\nThis run tested no claim."
        counts = {v: sum(r.verdict == v for r in self.rows)
                  for v in ("reproduced", "not resolved", "contradicted", NOT_TESTED)}
        tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        return (f"## Findings\n\n{_INTRO}\n\n**{len(self.rows)} claims: {tally}.**\n\n"
                f"{findings_markdown(self.table(digits))}")

    def show(self, digits: int = 3) -> None:
        """Display :meth:`markdown` (call it in the notebook cell tagged ``findings``)."""
        from IPython.display import Markdown, display

        display(Markdown(self.markdown(digits)))

    def to_dataset(self) -> xr.Dataset:
        """The rows over a dim ``finding``: ``finding_claim``, ``finding_paper``, ``finding_value``,
        ``finding_low``, ``finding_high``, ``finding_n``, ``finding_verdict``, ``finding_reason``,
        ``finding_percent`` (the value is a rate shown in %)."""
        idx = np.arange(len(self.rows))
        data: dict[str, Any] = {}
        for f in _FIELDS:
            vals = [getattr(r, f) for r in self.rows]
            if f in ("value", "low", "high"):
                arr = np.asarray(vals, dtype=np.float64)
            elif f == "n":
                arr = np.asarray(vals, dtype=np.int64)
            elif f == "percent":
                arr = np.asarray(vals, dtype=bool)
            else:
                arr = np.asarray(vals, dtype=object).astype(str) if vals else np.asarray([], dtype=str)
            data[f"finding_{f}"] = ("finding", arr)
        return xr.Dataset(data, coords={"finding": idx}, attrs={"findings_report": self.report})

    def attach(self, ds: xr.Dataset) -> xr.Dataset:
        """A copy of ``ds`` with :meth:`to_dataset`'s variables merged in."""
        clash = [v for v in self.to_dataset().data_vars if v in ds]
        if clash or "finding" in ds.dims:
            raise ValueError(f"results already hold findings ({clash or 'dim finding'})")
        out = xr.merge([ds, self.to_dataset()], combine_attrs="override")
        out.attrs = {**ds.attrs, "findings_report": self.report}
        return out


def findings_from_dataset(ds: xr.Dataset) -> Findings:
    """The :class:`Findings` stored in a results Dataset by :meth:`Findings.attach`."""
    if "finding_claim" not in ds:
        raise ValueError("this results Dataset holds no findings (finding_* variables)")
    out = Findings(str(ds.attrs.get("findings_report", "")))
    for i in range(ds.sizes["finding"]):
        vals = {f: ds[f"finding_{f}"].values[i] for f in _FIELDS}
        out.rows.append(Finding(str(vals["claim"]), str(vals["paper"]), float(vals["value"]),
                                float(vals["low"]), float(vals["high"]), int(vals["n"]),
                                str(vals["verdict"]), str(vals["reason"]), bool(vals["percent"])))
    return out
