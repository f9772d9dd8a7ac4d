"""The ``lrpkit`` command: data, train, report, all, methods.

    lrpkit all     --config configs/default.yaml   # data -> models -> every notebook -> reports/
    lrpkit data    --config ...                     # generate the bias-zoo scenes (skipped when current)
    lrpkit train   --config ... [--only cnn|fisher] # train the default models (skipped when current)
    lrpkit report  --config ... [--notebooks 00 03] [--out DIR] [--show-code] [--force]
    lrpkit report  --config configs/grid.yaml [--scheduler local:4 | tcp://host:8786]
    lrpkit methods                                  # the heatmap-method registry

Exit status: 0 on success, 1 when a step or any notebook failed, 2 for bad arguments.
The steps are :mod:`lrpkit.pipeline` (data, models, staleness) and :mod:`lrpkit.reports`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from .config import load_config
from .pipeline import (FINGERPRINT, SCENE_MARKER as MARKER, fingerprint, model_current,  # noqa: F401
                       scenes_current)


def _log(msg: str) -> None:
    print(f"[lrpkit] {msg}", flush=True)


def step_data(cfg: Any, force: bool = False) -> None:
    """``lrpkit data``: :func:`lrpkit.pipeline.make_scenes`."""
    from .pipeline import make_scenes

    make_scenes(cfg, force=force)


def step_train(cfg: Any, only: Sequence[str] = ("cnn", "fisher"), force: bool = False) -> None:
    """``lrpkit train``: :func:`lrpkit.pipeline.train_models`."""
    from .pipeline import train_models

    train_models(cfg, only=only, force=force)


def step_report(cfg_arg: Any, notebooks: Sequence[str] | None = None, out: str | None = None,
                show_code: bool = False, scheduler: str | None = None, force: bool = True) -> bool:
    from .reports import run_all

    summary = run_all(cfg_arg, notebooks=notebooks, out_dir=out,
                      hide_code=False if show_code else None, scheduler=scheduler, force=force)
    print(summary, flush=True)
    return summary.ok


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lrpkit", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def add_config(sp):
        sp.add_argument("--config", default="default",
                        help="config name in configs/ or a YAML path (default: default)")

    sp = sub.add_parser("data", help="generate the bias-zoo scene set")
    add_config(sp)
    sp.add_argument("--force", action="store_true", help="regenerate even when current")
    sp = sub.add_parser("train", help="train the default models")
    add_config(sp)
    sp.add_argument("--only", nargs="+", choices=["cnn", "fisher"], default=["cnn", "fisher"])
    sp.add_argument("--force", action="store_true", help="retrain even when present")
    sp = sub.add_parser("report", help="run the notebooks with papermill into reports/")
    add_config(sp)
    sp.add_argument("--notebooks", nargs="+", help="names or prefixes (default: all)")
    sp.add_argument("--out", help="report folder (default: the config's paths.reports)")
    sp.add_argument("--show-code", action="store_true", help="keep code cells in the HTML")
    sp.add_argument("--scheduler", help="serial, local (one worker per core), local:N (dask LocalCluster of N workers) "
                    "or tcp://host:port (an existing dask cluster)")
    sp.add_argument("--force", action="store_true", help="re-run notebooks / grid cells that finished")
    sp = sub.add_parser("all", help="data, train and report in one go")
    add_config(sp)
    sp.add_argument("--force", action="store_true", help="regenerate data and retrain")
    sub.add_parser("methods", help="list the registered heatmap methods")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .runtime import tune_malloc

    tune_malloc()  # torch's large activations reuse the heap instead of mmap per pass
    if args.cmd == "methods":
        from .explain import methods

        for name, m in methods().items():
            print(f"{name:20s} [{m.model_kind}] {m.description}")
            for k, v in m.params.items():
                print(f"{'':24s}{k} = {v!r}")
        return 0
    if args.cmd == "report":  # a grid config (configs/grid.yaml) or a plain config
        from .grid import RunInterrupted, is_grid_config, run_grid

        try:
            if is_grid_config(args.config):
                summary = run_grid(args.config, scheduler=args.scheduler, force=args.force, out=args.out)
                print(summary, flush=True)
                return 0 if summary.ok else 1
            cfg = load_config(args.config)
            return 0 if step_report(cfg["_source"], args.notebooks, args.out, args.show_code,
                                    scheduler=args.scheduler, force=args.force) else 1
        except RunInterrupted as exc:
            print(f"lrpkit: {exc}; finished cells are kept, run again to resume", file=sys.stderr)
            return 128 + exc.signum
        except (FileNotFoundError, ValueError, TypeError) as exc:
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
    # all
    step_data(cfg, force=args.force)
    step_train(cfg, force=args.force)
    return 0 if step_report(config_arg) else 1


if __name__ == "__main__":
    sys.exit(main())
