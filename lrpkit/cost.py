"""What a report run will cost, estimated before it runs (``lrpkit report --dry-run``).

A notebook's run time is modelled as a fixed part (kernel start, imports, loading the models,
figures) plus terms that scale with the config's budget keys ("sample size" keys: images,
steps, repeats ...)::

    T(config) = fixed + (T_measured - fixed) * sum_i share_i * units_i(config) / units_i(measured)

``T_measured`` is the notebook's last successful run (``<reports>/<name>.status.json``, its
``seconds``) at the config that run recorded in its results (``<name>.nc`` attrs ``config``);
without a run, the ``expected_seconds`` of the notebook's jupytext header at the default config.
``units_i`` is the product of the term's keys (a key that is ``null`` for "all images" counts
the data set's images; any other ``null`` counts as unchanged) unless the term gives its own
formula.  The shares split the variable time between the terms; where they were not measured
they are equal, and the range printed with every estimate holds for *any* split: all the
variable time scaling with the least- or the most-growing term.  Run times measured on a loaded
machine vary by about +-25 % on top of that (:data:`TIMING_NOISE`).

The notebooks declare their terms in :data:`COSTS` (one entry per notebook; a notebook without
one scales as a whole with nothing: its measured time).  Data generation and lrpkit's own
training (:func:`setup_costs`) are estimated from :data:`SETUP_REFERENCE`, measured on the main
job's machine (2 cores), and only counted when the config's data or models are not current.

Nothing here runs a notebook or writes a file; :func:`estimate_run` only reads the status files,
the results' attrs and the notebooks' headers.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Term", "NotebookCost", "COSTS", "TIMING_NOISE", "SETUP_REFERENCE", "Estimate",
           "RunEstimate", "key_value", "term_units", "term_ratio", "measured_run", "estimate_notebook",
           "setup_costs", "estimate_run", "format_estimate", "dry_run"]

#: relative spread of a run time measured on a shared machine (the same notebook, the same config)
TIMING_NOISE = 0.25


@dataclass(frozen=True)
class Term:
    """One part of a notebook's cost: ``what`` it computes, the config ``keys``
    (``"section.key"``) whose product counts its units, its ``share`` of the variable time at
    the measured config (``None``: an equal split) and optionally ``units(cfg)``, its own count."""

    what: str
    keys: tuple[str, ...]
    share: float | None = None
    units: Callable[[Any], float] | None = None


@dataclass(frozen=True)
class NotebookCost:
    """A notebook's cost model: ``fixed`` seconds (kernel, imports, models, figures) and its
    :class:`Term` s; ``basis``: where the shares / the fixed part come from."""

    fixed: float
    terms: tuple[Term, ...]
    basis: str = "shares not measured: an equal split"


def _n_images(cfg: Any) -> float | None:
    """The analysed split's size, known before loading it: lrpkit's scenes (``data.n_test`` for
    ``test``) or ``dataset.images``; ``None`` when only the data set itself can say."""
    ds = cfg.dataset
    if ds.get("images"):
        return float(ds.images)
    if ds.source == "scenes":
        return float({"train": cfg.data.n_train, "val": cfg.data.n_val}.get(ds.split, cfg.data.n_test))
    return None


#: keys whose ``null`` means "every image of the analysed split"
ALL_IMAGES = {"evaluation.ap_images", "evaluation.context_ap_images", "evaluation.tag_images",
              "fgvis.colour_images", "fgvis.defence_candidates", "dataset.images"}


def _resampling_units(cfg: Any) -> float:
    """Notebook 01's resampling: pairs x repeats x features replaced (at most the ~4,200 local
    features of a scene image at the default ``fisher`` grid; Lapuschkin et al. 2016, App. D)."""
    ev = cfg.evaluation
    return float(ev.resampling_images * ev.resampling_repeats
                 * min(ev.resampling_steps * ev.resampling_batch, 4200) + ev.resampling_images * 50)


def _pda_heatmap_units(cfg: Any) -> float:
    """Notebook 05's heatmaps: images x window positions (1 / stride^2) x samples."""
    p = cfg.pda
    return float(p.heatmap_images * p.get("samples", 10) / max(1, p.heatmap_stride) ** 2)


#: the notebooks' cost models (their budget keys as of this version of the config)
COSTS: dict[str, NotebookCost] = {
    "00_data_and_models": NotebookCost(
        fixed=13.0, basis="fixed part and shares from a profile of the default config (1 thread)",
        terms=(Term("scores and AP of every model on the images and their twins",
                    ("evaluation.ap_images",)),)),
    "01_fv_validation": NotebookCost(
        fixed=10.0, basis="fixed part and shares from a profile of the default config (1 thread)",
        terms=(Term("scores and AP (FV encodings) on the images and their twins",
                    ("evaluation.ap_images",), share=0.4),
               Term("local-feature resampling (Algorithm 1)",
                    ("evaluation.resampling_images", "evaluation.resampling_repeats",
                     "evaluation.resampling_steps", "evaluation.resampling_batch"),
                    share=0.6, units=_resampling_units))),
    "02_context_analysis": NotebookCost(
        fixed=10.0, terms=(
            Term("mu per class (heatmaps of both models)", ("evaluation.context_images",)),
            Term("AP drop on the swapped twins", ("evaluation.context_ap_images",)),
            Term("mu at the CNN checkpoints", ("evaluation.context_checkpoint_images",)),
            Term("the tag experiment", ("evaluation.tag_images",)))),
    "03_shallow_vs_deep": NotebookCost(
        fixed=10.0, terms=(
            Term("average heatmaps", ("evaluation.average_heatmap_images",)),
            Term("the tag experiment", ("evaluation.tag_images",)))),
    "04_aopc_evaluation": NotebookCost(
        fixed=10.0, terms=(
            Term("AOPC of every method (Samek et al. 2017, Fig. 4)",
                 ("evaluation.aopc_images", "evaluation.aopc_repeats", "evaluation.aopc_steps",
                  "evaluation.aopc_step_samples"),
                 units=lambda cfg: _aopc_units(cfg, "aopc_images", "aopc_steps", repeats=True)),
            Term("region sizes (Fig. 8)", ("evaluation.aopc_scale_images", "evaluation.aopc_scale_steps"),
                 units=lambda cfg: _aopc_units(cfg, "aopc_scale_images", "aopc_scale_steps",
                                               sizes=len(cfg["evaluation"]["aopc_region_sizes"]))),
            Term("checkpoints (Fig. 7)", ("evaluation.aopc_checkpoint_images",
                                          "evaluation.aopc_checkpoint_steps"),
                 units=lambda cfg: _aopc_units(cfg, "aopc_checkpoint_images", "aopc_checkpoint_steps",
                                               sizes=len(cfg["cnn"]["checkpoints"]))),
            Term("FV-LRP AOPC", ("evaluation.aopc_fv_images", "evaluation.aopc_fv_steps"),
                 units=lambda cfg: _aopc_units(cfg, "aopc_fv_images", "aopc_fv_steps")),
            Term("ROAD", ("evaluation.aopc_road_images", "evaluation.aopc_road_steps"),
                 units=lambda cfg: _aopc_units(cfg, "aopc_road_images", "aopc_road_steps")),
            Term("deletion / insertion", ("evaluation.deletion_images", "evaluation.deletion_steps")))),
    "05_pda_speedup": NotebookCost(
        fixed=10.0, terms=(
            Term("PDA heatmaps", ("pda.heatmap_images", "pda.heatmap_stride", "pda.samples"),
                 units=_pda_heatmap_units),
            Term("approximation error (Fig. 11)", ("pda.approx_images", "pda.approx_samples")),
            Term("patch model", ("pda.patch_images",)),
            Term("invariance (Fig. 18)", ("pda.invariance_images",)))),
    "06_fgvis_bias_probes": NotebookCost(
        fixed=10.0, terms=(
            Term("defence (Table 1)", ("fgvis.defence_images", "fgvis.defence_steps")),
            Term("faithfulness (Table 2)", ("fgvis.faithfulness_images", "fgvis.steps")),
            Term("the four games (Fig. 2)", ("fgvis.example_images", "fgvis.steps")),
            Term("colour swap (Table A3)", ("fgvis.colour_images",)),
            Term("tag probe", ("fgvis.tag_images", "fgvis.steps")))),
}

#: data generation and training, measured on the main job's machine (2 cores, default config)
SETUP_REFERENCE = {
    # lrpkit.data.generate_scenes: 78 CPU-seconds for 2000 / 500 / 1000 + 2000 twins (realistic),
    # 8 s with the easy preset (README, "Generating the full default set")
    "scene_seconds_per_image": {"realistic": 78.0 / 5500, "easy": 8.0 / 5500},
    # the scene CNN: seconds per (epoch x training image) at crop 112, width 16 when no
    # history.nc of an earlier training is at hand (the main job's: 252 s for 30 x 2000)
    "cnn_seconds_per_epoch_image": 252.0 / (30 * 2000),
    # the FV model: dense SIFT + FV encoding per image at the default fisher section (single
    # thread, measured in notebook 01) and the PCA / GMM / SVM fit (the main job's data +
    # training time, 8.5 min, less the CNN and the data: an estimate, +-50 %)
    "fv_seconds_per_image": 0.055,
    "fv_fit_seconds": 60.0,
}


# ------------------------------------------------------------------------------------ units

def _aopc_units(cfg: Any, images_key: str, steps_key: str, repeats: bool = False, sizes: int = 1) -> float:
    """Perturbed images a notebook-04 study forwards: images x evaluated steps (x repeats) (x sizes).

    Evaluated steps are ``evaluation.aopc_step_samples`` when set (one sampled step per block of
    steps), else every step ``L`` (``null``: the paper's 15.7 % share of the image,
    :func:`lrpkit.evaluate.aopc_study.study_steps`) on the scene CNN's crop.
    """
    from .evaluate.aopc_study import study_steps
    from .evaluate.perturbation import scaled_region_size

    ev, crop = cfg["evaluation"], int(cfg["cnn"]["crop"])
    m = ev["aopc_region_size"] or scaled_region_size(9, crop)
    L, stride = study_steps(crop, crop, m, ev[steps_key], ev["aopc_step_samples"])
    units = float(ev[images_key] or 0) * (L // stride) * sizes
    return units * (float(ev["aopc_repeats"]) if repeats else 1.0)


def key_value(cfg: Any, key: str) -> Any:
    """The value of ``"section.key"`` in ``cfg`` (a :class:`lrpkit.config.Config` or a plain
    dict of one); ``KeyError`` naming the key when the config has no such key."""
    sec, _, name = key.partition(".")
    try:
        section = cfg[sec]
        return section[name]
    except (KeyError, TypeError, AttributeError):
        raise KeyError(f"config key {key!r} is not in this config") from None


def _count(cfg: Any, key: str) -> tuple[float | None, str | None]:
    """One key's count under ``cfg`` and a note when it has none (missing, automatic, not a count)."""
    try:
        v = key_value(cfg, key)
    except KeyError as exc:
        return None, str(exc).strip('"')
    if v is None:
        n = _n_images(cfg) if key in ALL_IMAGES else None
        return (n, None) if n is not None else (None, f"{key} is null (automatic): counted as unchanged")
    if isinstance(v, (list, tuple)):
        return float(len(v)), None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None, f"{key} = {v!r} is not a count: counted as unchanged"
    return float(v), None


def _raw(cfg: Any, key: str) -> Any:
    try:
        return key_value(cfg, key)
    except KeyError:
        return KeyError


def term_units(term: Term, cfg: Any) -> tuple[float | None, list[str]]:
    """``(units, notes)``: the term's count under ``cfg`` (the product of its keys, or its own
    ``units``); ``None`` when a key has no count (missing, automatic), with a note."""
    if term.units is not None:
        try:
            return float(term.units(cfg)), []
        except (KeyError, AttributeError, TypeError) as exc:
            return None, [f"{term.what}: {exc}"]
    units, notes = 1.0, []
    for key in term.keys:
        v, note = _count(cfg, key)
        if v is None:
            return None, [note]
        units *= v
    return units, notes


def term_ratio(term: Term, cfg: Any, measured: Any) -> tuple[float, list[str]]:
    """How many times the term's units under ``cfg`` exceed those of the ``measured`` run's
    config; a key without a count on either side (missing, automatic ``null``) counts as
    unchanged (factor 1), with a note."""
    if term.units is not None:
        new, n1 = term_units(term, cfg)
        old, n2 = term_units(term, measured)
        notes = n1 + [f"(measured run) {n}" for n in n2]
        return (new / old if new is not None and old else 1.0), notes
    ratio, notes = 1.0, []
    for key in term.keys:
        new, n1 = _count(cfg, key)
        old, n2 = _count(measured, key)
        if new is not None and old:
            ratio *= new / old
        elif _raw(cfg, key) is KeyError or _raw(cfg, key) != _raw(measured, key):   # same setting: silent
            notes += [n for n in (n1, n2 and f"(measured run) {n2}") if n]
    return ratio, notes


# ------------------------------------------------------------------------------------ measured

@dataclass
class Measured:
    """A notebook's measured run: ``seconds`` at ``config`` (a Config), and where they came from."""

    seconds: float
    config: Any
    basis: str


def _config_of_results(path: Path) -> Any | None:
    """The config a run recorded in its results' attrs (``make_attrs``), or ``None``."""
    if not path.is_file():
        return None
    try:
        import xarray as xr

        from .config import Config, load_config

        with xr.open_dataset(path) as ds:
            raw = ds.attrs.get("config")
        if raw is None:
            return None
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
        known = Config().to_dict()    # keys renamed or removed since that run are left out
        keep = {k: ({kk: vv for kk, vv in v.items() if kk in known[k]}
                    if isinstance(v, dict) and isinstance(known.get(k), dict) else v)
                for k, v in data.items() if k in known}
        return load_config(keep)
    except Exception:  # noqa: BLE001 - an unreadable or foreign file: no measured config
        return None


def _header_seconds(notebook: Path) -> float | None:
    """``expected_seconds`` of the notebook's jupytext header (``.py``) or metadata (``.ipynb``)."""
    for path in (notebook.with_suffix(".ipynb"), notebook.with_suffix(".py")):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".ipynb":
                meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
            else:
                from .notebooks import read_source

                meta = read_source(path).metadata
            v = (meta.get("lrpkit") or {}).get("expected_seconds")
            if v:
                return float(v)
        except Exception:  # noqa: BLE001 - a damaged notebook: no header value
            continue
    return None


def measured_run(name: str, report_dirs: Sequence[str | os.PathLike],
                 notebook: str | os.PathLike | None = None) -> Measured | None:
    """The last successful run of notebook ``name`` found in ``report_dirs`` (in order): its
    status file's ``seconds`` and the config recorded in its results; else the notebook's header
    ``expected_seconds`` at the default config; else ``None``."""
    from .batch.cells import read_status
    from .config import Config

    for d in report_dirs:
        d = Path(d)
        st = read_status(d / f"{name}.status.json")
        if st is None or st.state != "ok" or not st.seconds:
            continue
        cfg = _config_of_results(d / f"{name}.nc")
        basis = f"{d / (name + '.status.json')}: {st.seconds:.1f} s"
        if cfg is None:
            cfg, basis = Config(), basis + " (its config not recorded: assumed the defaults)"
        else:
            basis += " at the config recorded in its results"
        return Measured(float(st.seconds), cfg, basis)
    if notebook is not None:
        sec = _header_seconds(Path(notebook))
        if sec:
            return Measured(sec, Config(), f"header expected_seconds of {Path(notebook).name} "
                                           "(the default config)")
    return None


# ------------------------------------------------------------------------------------ estimates

@dataclass
class Estimate:
    """A cost estimate in seconds with its range (``low``, ``high``) and what it rests on."""

    name: str
    seconds: float
    low: float
    high: float
    basis: str
    scaling: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measured: float | None = None


def estimate_notebook(name: str, cfg: Any, measured: Measured | None,
                      cost: NotebookCost | None = None) -> Estimate:
    """The estimated run time of notebook ``name`` under ``cfg`` (module docstring).

    Without a measurement the estimate is NaN (said in ``notes``); without a cost model the
    measured time is taken as it is (nothing scales).
    """
    cost = COSTS.get(name) if cost is None else cost
    if measured is None:
        return Estimate(name, math.nan, math.nan, math.nan, "no run recorded and no header "
                        "expected_seconds", notes=["run it once (or give it expected_seconds)"])
    t = float(measured.seconds)
    if cost is None or not cost.terms:
        return Estimate(name, t, t * (1 - TIMING_NOISE), t * (1 + TIMING_NOISE), measured.basis,
                        notes=["no cost model: the measured time as it is"], measured=t)
    fixed = min(cost.fixed, 0.8 * t)
    var = t - fixed
    shares = [tm.share for tm in cost.terms]
    if any(s is None for s in shares):
        shares = [1.0 / len(cost.terms)] * len(cost.terms)
    total_share = sum(shares)
    ratios, scaling, notes = [], [], []
    for tm in cost.terms:
        r, n = term_ratio(tm, cfg, measured.config)
        notes += [x for x in n if x not in notes]
        ratios.append(r)
        scaling.append(f"{tm.what} [{' x '.join(k.split('.', 1)[1] for k in tm.keys)}]: x{r:.3g}")
    est = fixed + var * sum(sh / total_share * r for sh, r in zip(shares, ratios))
    low = (fixed + var * min(ratios)) * (1 - TIMING_NOISE)
    high = (fixed + var * max(ratios)) * (1 + TIMING_NOISE)
    return Estimate(name, est, low, high, f"{measured.basis}; {cost.basis}", scaling, notes, t)


def _cnn_reference(cfg: Any) -> tuple[float, str]:
    """Seconds per (epoch x image x (crop/112)^2 x (width/16)^2): from the last training's
    ``history.nc`` (``train_time_s`` at its recorded cnn section) when present."""
    from .config import resolve_path

    path = resolve_path(cfg, "models") / "cnn" / "history.nc"
    try:
        import xarray as xr

        with xr.open_dataset(path) as h:
            t, epochs, n = float(h.attrs["train_time_s"]), int(h.attrs["epochs"]), int(h.attrs["n_train"])
            crop, width = float(h.attrs["crop"]), float(h.attrs["width"])
        per = t / (epochs * n * (crop / 112) ** 2 * (width / 16) ** 2)
        return per, f"{path}: {t:.0f} s for {epochs} epochs x {n} images"
    except Exception:  # noqa: BLE001 - no or a foreign history: the reference constant
        return SETUP_REFERENCE["cnn_seconds_per_epoch_image"], "lrpkit.cost.SETUP_REFERENCE"


def setup_costs(cfg: Any) -> list[Estimate]:
    """Data generation and lrpkit's own training that a run of ``cfg`` needs first (nothing
    when the config's scenes and models are current, or when it analyses a user's model)."""
    from . import pipeline

    out: list[Estimate] = []
    ref = SETUP_REFERENCE
    if pipeline.needs_scenes(cfg):
        why = pipeline.scenes_status(cfg)
        d = cfg.data
        if why is None:
            out.append(Estimate("data: scenes", 0.0, 0.0, 0.0, f"current in {cfg.paths.scenes}: reused"))
        else:
            n = d.n_train + d.n_val + 3 * d.n_test          # test + its two twin splits
            per = ref["scene_seconds_per_image"].get(d.preset, ref["scene_seconds_per_image"]["realistic"])
            t = n * per
            out.append(Estimate("data: scenes", t, t * 0.75, t * 1.5,
                                f"{why}; {n} images x {per:.4f} s (measured, README)"))
    todo = pipeline.models_to_train(cfg)
    if "cnn" in todo:
        why = pipeline.model_status(cfg, "cnn")
        if why is None:
            out.append(Estimate("train: scene CNN", 0.0, 0.0, 0.0, "current: reused"))
        else:
            per, basis = _cnn_reference(cfg)
            c = cfg.cnn
            t = per * c.epochs * cfg.data.n_train * (c.crop / 112) ** 2 * (c.width / 16) ** 2
            out.append(Estimate("train: scene CNN", t, t * 0.7, t * 1.5,
                                f"{why}; {c.epochs} epochs x {cfg.data.n_train} images from {basis}"))
    if "fisher" in todo:
        why = pipeline.model_status(cfg, "fisher")
        if why is None:
            out.append(Estimate("train: FV model", 0.0, 0.0, 0.0, "current: reused"))
        else:
            f = cfg.fisher
            dens = len(f.bin_sizes) / 3 * (3 / f.step) ** 2 * (f.n_components * f.pca_dim) / (64 * 64)
            n = cfg.data.n_train + cfg.data.n_test
            t = n * ref["fv_seconds_per_image"] * dens + ref["fv_fit_seconds"] * (f.n_samples / 50000)
            out.append(Estimate("train: FV model", t, t * 0.5, t * 1.5,
                                f"{why}; encode {n} images x {ref['fv_seconds_per_image'] * dens:.3f} s "
                                "+ fit (SETUP_REFERENCE, +-50 %)"))
    return out


@dataclass
class RunEstimate:
    """Per-notebook and set-up estimates of one run, their totals and the workers."""

    config: str
    notebooks: list[Estimate]
    setup: list[Estimate]
    workers: int | None

    def total(self, part: str = "all") -> tuple[float, float, float]:
        rows = {"notebooks": self.notebooks, "setup": self.setup,
                "all": self.notebooks + self.setup}[part]
        vals = [(e.seconds, e.low, e.high) for e in rows if not math.isnan(e.seconds)]
        return tuple(sum(v[i] for v in vals) for i in range(3)) if vals else (0.0, 0.0, 0.0)

    def wall(self) -> tuple[float, float] | None:
        """Notebook wall time on ``workers`` kernels: between the longest notebook / the even
        split and the longest-first schedule's bound (``total / w + longest``)."""
        if not self.workers:
            return None
        ests = [e.seconds for e in self.notebooks if not math.isnan(e.seconds)]
        if not ests:
            return None
        tot = sum(ests)
        return max(max(ests), tot / self.workers), tot / self.workers + max(ests)


def _workers(scheduler: str | None) -> int | None:
    s = (scheduler or "local").strip()
    if s == "serial":
        return 1
    if s == "local":
        return os.cpu_count() or 1
    if s.startswith("local:"):
        try:
            return max(1, int(s.split(":", 1)[1]))
        except ValueError:
            return None
    return None       # a dask cluster: its size is not known here


def estimate_run(cfg: Any, notebooks: Sequence[str | os.PathLike], *,
                 report_dirs: Sequence[str | os.PathLike] = (), scheduler: str | None = None,
                 setup: bool = True) -> RunEstimate:
    """Estimates for running ``notebooks`` (paths or names) under ``cfg``: each notebook's
    (:func:`estimate_notebook`, measured in the first of ``report_dirs`` holding a successful
    run) and the set-up's (:func:`setup_costs`); ``scheduler`` as ``lrpkit report`` takes it
    (default: the config's ``reports.scheduler``)."""
    ests = []
    for nb in notebooks:
        p = Path(nb)
        name = p.stem
        ests.append(estimate_notebook(name, cfg, measured_run(name, report_dirs, p)))
    sched = scheduler if scheduler is not None else cfg.reports.get("scheduler")
    return RunEstimate(str(getattr(cfg, "source", "")), ests, setup_costs(cfg) if setup else [],
                       _workers(sched))


def _s(x: float) -> str:
    if math.isnan(x):
        return "?"
    if x >= 3600:
        return f"{x / 3600:.1f} h"
    if x >= 120:
        return f"{x / 60:.1f} min"
    return f"{x:.0f} s"


def format_estimate(run: RunEstimate) -> str:
    """The dry-run's text: one block per notebook (estimate, range, measured, scaling, basis),
    the set-up, the totals, the wall time on the workers and how uncertain it all is."""
    lines = [f"Estimated cost of `lrpkit report` with config {run.config} (dry run: nothing is "
             "run or written)", ""]
    for e in run.notebooks:
        m = "" if e.measured is None else f" (measured {_s(e.measured)})"
        lines.append(f"{e.name:24s} {_s(e.seconds):>9s}  [{_s(e.low)} - {_s(e.high)}]{m}")
        lines += [f"    scales: {s}" for s in e.scaling]
        lines.append(f"    basis: {e.basis}")
        lines += [f"    note: {n}" for n in e.notes]
    for e in run.setup:
        lines.append(f"{e.name:24s} {_s(e.seconds):>9s}  [{_s(e.low)} - {_s(e.high)}]")
        lines.append(f"    basis: {e.basis}")
    nb, st, al = run.total("notebooks"), run.total("setup"), run.total("all")
    lines += ["", f"notebooks: {_s(nb[0])} kernel time [{_s(nb[1])} - {_s(nb[2])}]",
              f"data + training: {_s(st[0])} [{_s(st[1])} - {_s(st[2])}]",
              f"total: {_s(al[0])} [{_s(al[1])} - {_s(al[2])}] of single-threaded CPU time"]
    w = run.wall()
    if w is not None:
        lines.append(f"notebooks' wall time on {run.workers} worker(s): {_s(w[0])} - {_s(w[1])} "
                     "(longest first)")
    else:
        lines.append("notebooks' wall time: the cluster's size is not known here; divide the kernel "
                     "time by its workers (at least the longest notebook)")
    lines += ["", "Uncertainty: each estimate scales a measured run time (the status file's "
              "seconds, or the header's expected_seconds) linearly with the config's sample-size "
              f"keys; the range covers any split of the time between a notebook's parts and "
              f"+-{TIMING_NOISE:.0%} timing noise of a shared machine. Measured on CPU: a GPU "
              "shortens the network passes by an amount not modelled here."]
    return "\n".join(lines)


def dry_run(config: str | os.PathLike = "default", notebooks: Sequence[str] | None = None,
            out: str | os.PathLike | None = None, scheduler: str | None = None,
            nb_dir: str | os.PathLike | None = None, file: Any = None) -> int:
    """``lrpkit report --config ... --dry-run``: print :func:`format_estimate` for the notebooks
    ``lrpkit report`` would run (``notebooks`` / the config's ``reports.notebooks``) and return
    the exit status (0; 2 for a config or notebook name it cannot use).  Measured runs are looked
    up in ``out`` (default: the config's ``paths.reports``), then in the default config's report
    folder.  Creates nothing."""
    import sys

    from .batch.spec import discover_notebooks
    from .config import load_config, resolve_path

    file = sys.stdout if file is None else file
    try:
        cfg = load_config(config)
        names = notebooks if notebooks is not None else cfg.reports.get("notebooks")
        nbs = discover_notebooks(nb_dir, names)
        default = load_config("default")
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"lrpkit: {exc}", file=sys.stderr)
        return 2
    dirs = [Path(out) if out is not None else resolve_path(cfg, "reports"), resolve_path(default, "reports")]
    dirs = list(dict.fromkeys(dirs))
    print(format_estimate(estimate_run(cfg, nbs, report_dirs=dirs, scheduler=scheduler)), file=file,
          flush=True)
    return 0
