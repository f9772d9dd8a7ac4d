"""The ``lrpkit`` command: data, train, report, all, methods, init.

    lrpkit all     --config configs/default.yaml   # data -> models -> every notebook -> reports/
    lrpkit report  --config my.yaml                 # your model and data (model:, dataset:)
    lrpkit data    --config ...                     # generate the bias-zoo scenes (skipped when current)
    lrpkit train   --config ... [--only cnn|fisher] # train lrpkit's models the config uses
    lrpkit report  --config ... [--notebooks 00 03] [--out DIR] [--show-code] [--force]
    lrpkit report  --config configs/grid.yaml [--scheduler local:4 | tcp://host:8786]
    lrpkit methods                                  # the heatmap-method registry
    lrpkit init    DIR [--force]                    # a project folder: configs/ and notebooks/

Exit status: 0 on success, 1 when a step or any notebook failed, 2 for bad arguments, 130 / 143
when stopped by SIGINT / SIGTERM (worker processes ended with it; finished steps are kept).
The steps are :mod:`lrpkit.pipeline` (data, models, staleness) and :mod:`lrpkit.batch`.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .config import load_config
from .pipeline import (FINGERPRINT, SCENE_MARKER as MARKER, fingerprint, model_current,  # noqa: F401
                       scenes_current)


def _log(msg: str) -> None:
    print(f"[lrpkit] {msg}", flush=True)


def step_data(cfg: Any, force: bool = False) -> None:
    """``lrpkit data``: :func:`lrpkit.pipeline.make_scenes`, holding the scene folder's lock
    (:func:`lrpkit.runlock.folder_lock`: a second run there exits 2 naming the first)."""
    from .layout import scenes_root
    from .pipeline import make_scenes
    from .runlock import folder_lock

    with folder_lock(scenes_root(cfg), "lrpkit data"):
        make_scenes(cfg, force=force)


def step_train(cfg: Any, only: Sequence[str] | None = None, force: bool = False) -> None:
    """``lrpkit train``: :func:`lrpkit.pipeline.train_models` (``only=None``: the models the
    config asks for, :func:`lrpkit.pipeline.models_to_train`)."""
    from .layout import models_root
    from .pipeline import train_models
    from .runlock import folder_lock

    with folder_lock(models_root(cfg), "lrpkit train"):   # a second run there exits 2
        train_models(cfg, only=only, force=force)


def step_report(cfg_arg: Any, notebooks: Sequence[str] | None = None, out: str | None = None,
                show_code: bool = False, scheduler: str | None = None, force: bool = True) -> bool:
    from .batch import run_all

    summary = run_all(cfg_arg, notebooks=notebooks, out_dir=out,
                      hide_code=False if show_code else None, scheduler=scheduler, force=force)
    print(summary, flush=True)
    return summary.ok


def _plain(text: str) -> str:
    """``text`` without reST markup, for ``--help``: ``:func:`x``` -> ``x``, ````x```` -> ``x``."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def build_parser() -> argparse.ArgumentParser:
    intro, examples, status = (__doc__ or "\n\n\n\n").split("\n\n")[:3]
    p = argparse.ArgumentParser(prog="lrpkit", description=_plain(intro),
                                epilog=_plain(f"examples:\n{examples}\n\n{status}"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add_config(sp):
        sp.add_argument("--config", default="default",
                        help="config name in configs/ or a YAML path (default: default)")

    sp = sub.add_parser("data", help="generate the bias-zoo scene set",
                        description="Generate the bias-zoo scene set (skipped when current).")
    add_config(sp)
    sp.add_argument("--force", action="store_true", help="regenerate even when current")
    sp = sub.add_parser("train", help="train lrpkit's models that the config uses",
                        description="Train lrpkit's own models that the config analyses, the scene "
                                    "CNN and, on the scenes, the Fisher-vector model (skipped when "
                                    "current); a config analysing your model trains nothing.")
    add_config(sp)
    sp.add_argument("--only", nargs="+", choices=["cnn", "fisher"], default=None,
                    help="train these (default: the ones the config uses)")
    sp.add_argument("--force", action="store_true", help="retrain even when present")
    sp = sub.add_parser("report", help="run the notebooks with papermill into reports/",
                        description="Run the notebooks with papermill into HTML reports; with a "
                                    "grid config (configs/grid.yaml) one run per grid cell.")
    add_config(sp)
    sp.add_argument("--notebooks", nargs="+", help="names or prefixes (default: all)")
    sp.add_argument("--out", help="report folder (default: the config's paths.reports)")
    sp.add_argument("--show-code", action="store_true", help="keep code cells in the HTML")
    sp.add_argument("--scheduler", help="serial, local (one worker per core), local:N (dask LocalCluster of N workers) "
                    "or tcp://host:port (an existing dask cluster)")
    sp.add_argument("--force", action="store_true", help="re-run notebooks / grid cells that finished")
    sp.add_argument("--dry-run", action="store_true", help="print the run's estimated cost from measured "
                    "run times (lrpkit.cost) and exit: nothing is run or written")
    sp = sub.add_parser("all", help="data, train and report in one go",
                        description="Data, train and report in one go: the scenes and lrpkit's "
                                    "models only when the config uses them (model.source: "
                                    "scene_cnn, dataset.source: scenes, the defaults).")
    add_config(sp)
    sp.add_argument("--notebooks", nargs="+", help="names or prefixes (default: all)")
    sp.add_argument("--force", action="store_true", help="regenerate data and retrain")
    sp = sub.add_parser("init", help="write the configs and notebooks into a project folder",
                        description="Write lrpkit's configs (configs/*.yaml, configs/examples/) and "
                                    "notebooks (notebooks/*.ipynb) into DIR; run the other commands "
                                    "in DIR to keep data, models and reports there.")
    sp.add_argument("dir", help="the project folder (created if missing)")
    sp.add_argument("--force", action="store_true", help="overwrite files that differ from lrpkit's")
    sub.add_parser("methods", help="list the registered heatmap methods",
                   description="List the registered heatmap methods and their parameters.")
    return p


class Stopped(KeyboardInterrupt):
    """The command got SIGINT or SIGTERM (``signum``); raised in the main thread by
    :func:`interrupt_policy` (like :class:`lrpkit.batch.RunInterrupted` during notebooks)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def end_workers(grace: float = 3.0, now: bool = False) -> None:
    """End the processes this one started: joblib's loky pool (``kill_workers``), then every
    remaining descendant (worker pools, kernels, dask workers; not the resource trackers, which
    clean up after the workers and exit with this process): SIGTERM, SIGKILL after ``grace``
    seconds (``now``: SIGKILL at once, as the signal handler does so that a pool does not first
    finish its queue)."""
    if not now and "joblib.externals.loky" in sys.modules:
        with contextlib.suppress(Exception):   # best effort on the way out
            from joblib.externals.loky import reusable_executor

            ex = getattr(reusable_executor, "_executor", None)
            if ex is not None:
                ex.shutdown(wait=False, kill_workers=True)
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with dask.distributed
        return
    try:
        kids = [k for k in psutil.Process().children(recursive=True) if not _is_tracker(k)]
    except psutil.Error:
        return
    for k in kids:
        with contextlib.suppress(psutil.Error):
            k.kill() if now else k.terminate()
    if now:
        return
    _, alive = psutil.wait_procs(kids, timeout=grace)
    for k in alive:
        with contextlib.suppress(psutil.Error):
            k.kill()
    psutil.wait_procs(alive, timeout=grace)


def _is_tracker(proc) -> bool:
    """A multiprocessing / loky resource tracker: it unlinks the pools' shared memory once the
    workers are gone and exits with this process (killing it first leaves its tracebacks)."""
    try:
        return "resource_tracker" in " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - psutil errors of a process that just ended
        return False


@contextlib.contextmanager
def interrupt_policy():
    """SIGINT and SIGTERM raise :class:`Stopped` in the main thread, after ending the worker
    processes at once (:func:`end_workers`); further signals are ignored until the command has
    cleaned up and returned 128 + signum (:func:`main`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with contextlib.suppress(ImportError):
        import psutil  # noqa: F401 - imported before a handler needs it

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        end_workers(now=True)
        raise Stopped(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``lrpkit`` command; returns the exit status (module docstring): one line and status 2
    for a user's error (a missing or foreign file or folder, a damaged input), one line and
    128 + signum when stopped by SIGINT / SIGTERM, with the worker processes ended."""
    from ._integrity import DamagedFile

    args = build_parser().parse_args(argv)
    with interrupt_policy():
        try:
            return _run(args)
        except KeyboardInterrupt as exc:   # Stopped, RunInterrupted, a plain Ctrl-C
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)   # restored by interrupt_policy on return
            signum = int(getattr(exc, "signum", signal.SIGINT))
            end_workers()
            what = ("finished notebooks are kept, run again to resume"
                    if args.cmd in ("report", "all") else "run the command again to finish")
            print(f"lrpkit: interrupted by {signal.Signals(signum).name}; {what}", file=sys.stderr,
                  flush=True)
            return 128 + signum
        except (FileExistsError, FileNotFoundError, NotADirectoryError, DamagedFile) as exc:
            print(f"lrpkit: {exc}", file=sys.stderr, flush=True)
            return 2


def _run(args: argparse.Namespace) -> int:
    from .runtime import tune_malloc

    tune_malloc()  # torch's large activations reuse the heap instead of mmap per pass
    if args.cmd == "init":
        from .resources import init_project

        try:
            written = init_project(args.dir, force=args.force)
        except (FileExistsError, NotADirectoryError) as exc:
            print(f"lrpkit: {exc}", file=sys.stderr)
            return 2
        _log(f"wrote {len(written)} file(s) into {args.dir}: configs/ (start from "
             f"configs/examples/), notebooks/; run `lrpkit report --config configs/<name>.yaml` there")
        return 0
    if args.cmd == "methods":
        from .explain import methods

        for name, m in methods().items():
            print(f"{name:20s} [{m.model_kind}] {m.description}")
            for k, v in m.params.items():
                print(f"{'':24s}{k} = {v!r}")
        return 0
    if args.cmd == "report" and args.dry_run:   # the estimated cost only (lrpkit.cost)
        from .cost import dry_run

        return dry_run(args.config, args.notebooks, args.out, args.scheduler)
    if args.cmd == "report":  # a grid config (configs/grid.yaml) or a plain config
        from .batch import is_grid_config, run_grid

        try:
            if is_grid_config(args.config):
                summary = run_grid(args.config, scheduler=args.scheduler, force=args.force, out=args.out)
                print(summary, flush=True)
                return 0 if summary.ok else 1
            cfg = load_config(args.config)
            from .batch import check_inputs

            check_inputs(cfg)   # a missing model file or data folder: said once, before any kernel
            return 0 if step_report(cfg["_source"], args.notebooks, args.out, args.show_code,
                                    scheduler=args.scheduler, force=args.force) else 1
        except (FileNotFoundError, ValueError, TypeError) as exc:   # a stop: main's one line
            print(f"lrpkit: {exc}", file=sys.stderr)
            return 2
    try:
        cfg = load_config(args.config)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"lrpkit: {exc}", file=sys.stderr)
        return 2
    config_arg = cfg["_source"]
    if args.cmd == "data":
        step_data(cfg, force=args.force)
        return 0
    if args.cmd == "train":
        step_train(cfg, only=args.only, force=args.force)
        return 0
    if args.cmd == "report":
        return 0 if step_report(config_arg, args.notebooks, args.out, args.show_code) else 1
    # all: build only what the config uses (nothing for a user's model on a user's data)
    from .batch import check_inputs
    from .pipeline import needs_scenes

    try:
        check_inputs(cfg)
    except FileNotFoundError as exc:
        print(f"lrpkit: {exc}", file=sys.stderr)
        return 2
    if needs_scenes(cfg):
        step_data(cfg, force=args.force)
    step_train(cfg, force=args.force)
    return 0 if step_report(config_arg, args.notebooks) else 1


if __name__ == "__main__":
    sys.exit(main())
