"""The ``lrpkit`` command: data, train, report, all, methods.

    lrpkit all     --config configs/default.yaml   # data -> models -> every notebook -> reports/
    lrpkit data    --config ...                     # generate the bias-zoo scenes (skipped when current)
    lrpkit train   --config ... [--only cnn|fisher] # train the default models (skipped when current)
    lrpkit report  --config ... [--notebooks 00 03] [--out DIR] [--show-code]
    lrpkit methods                                  # the heatmap-method registry

Exit status: 0 on success, 1 when a step or any notebook failed, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .config import load_config, resolve_path

MARKER = "lrpkit_scenes.json"


def _log(msg: str) -> None:
    print(f"[lrpkit] {msg}", flush=True)


def scenes_current(cfg: dict) -> bool:
    """Whether the scenes folder holds a generation with the config's sizes and seed."""
    meta = _read_marker(cfg)
    if meta is None:
        return False
    from .data.scenes import FORMAT_VERSION

    want = {**{k: cfg["data"][k] for k in ("n_train", "n_val", "n_test")}, "seed": cfg["seed"]}
    params = meta.get("params", meta)
    return meta.get("version") == FORMAT_VERSION and all(params.get(k) == v for k, v in want.items())


def step_data(cfg: dict, force: bool = False) -> None:
    from .data import generate_scenes

    root = resolve_path(cfg, "scenes")
    if not force and scenes_current(cfg):
        _log(f"scenes up to date in {root}")
        return
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER).is_file():
        # never replace a folder lrpkit did not generate (a VOC devkit, say)
        raise FileExistsError(
            f"paths.scenes = {root} is a non-empty folder that holds no generated scene set "
            f"(no {MARKER}); lrpkit will not overwrite it. Point paths.scenes elsewhere, or "
            f"remove the folder yourself.")
    t0 = time.perf_counter()
    d = cfg["data"]
    generate_scenes(root, n_train=d["n_train"], n_val=d["n_val"], n_test=d["n_test"],
                    seed=cfg["seed"], overwrite=True)
    _log(f"generated scenes in {root} ({time.perf_counter() - t0:.1f} s)")


FINGERPRINT = "config-fingerprint.json"


def fingerprint(cfg: dict, section: str) -> dict:
    """What a trained model depends on: its config section, the data sizes and the seed."""
    return {"section": section, "params": cfg.get(section) or {},
            "data": {k: (cfg.get("data") or {}).get(k) for k in ("n_train", "n_val", "n_test")},
            "seed": cfg.get("seed"), "scenes": str(resolve_path(cfg, "scenes")),
            "scenes_version": (_read_marker(cfg) or {}).get("version")}


def _read_marker(cfg: dict) -> dict | None:
    """The scene set's marker (generation parameters, format version), or None."""
    try:
        meta = json.loads((resolve_path(cfg, "scenes") / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def model_current(cfg: dict, section: str, path: Path) -> bool:
    """Whether ``path`` exists and was trained from the config's current section and data."""
    fp = path.parent / FINGERPRINT
    if not path.is_file() or not fp.is_file():
        return False
    try:
        return json.loads(fp.read_text()) == json.loads(json.dumps(fingerprint(cfg, section)))
    except ValueError:
        return False


def _write_fingerprint(cfg: dict, section: str, folder: Path) -> None:
    from .results import atomic_path

    with atomic_path(folder / FINGERPRINT) as tmp:
        tmp.write_text(json.dumps(fingerprint(cfg, section), indent=2, sort_keys=True) + "\n")


def step_train(cfg: dict, only: Sequence[str] = ("cnn", "fisher"), force: bool = False) -> None:
    models = resolve_path(cfg, "models")
    if "cnn" in only:
        from .models import train_from_config

        if force or not model_current(cfg, "cnn", models / "cnn" / "cnn.pt"):
            t0 = time.perf_counter()
            res = train_from_config(cfg)
            _write_fingerprint(cfg, "cnn", models / "cnn")
            _log(f"trained CNN ({time.perf_counter() - t0:.1f} s): {res}")
        else:
            _log(f"CNN up to date in {models / 'cnn'}")
    if "fisher" in only:
        try:
            from .fisher import fit_fisher_from_config
        except ImportError:
            _log("Fisher-vector pipeline not available; skipped")
            return
        if force or not model_current(cfg, "fisher", models / "fisher" / "fv.joblib"):
            t0 = time.perf_counter()
            res = fit_fisher_from_config(cfg)
            _write_fingerprint(cfg, "fisher", models / "fisher")
            _log(f"trained Fisher-vector classifier ({time.perf_counter() - t0:.1f} s): {res}")
        else:
            _log(f"Fisher-vector model up to date in {models / 'fisher'}")


def step_report(cfg_arg: Any, notebooks: Sequence[str] | None = None, out: str | None = None,
                show_code: bool = False) -> bool:
    from .reports import run_all

    summary = run_all(cfg_arg, notebooks=notebooks, out_dir=out,
                      hide_code=False if show_code else None)
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
    sp = sub.add_parser("all", help="data, train and report in one go")
    add_config(sp)
    sp.add_argument("--force", action="store_true", help="regenerate data and retrain")
    sub.add_parser("methods", help="list the registered heatmap methods")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "methods":
        from .explain import methods

        for name, m in methods().items():
            print(f"{name:20s} [{m.model_kind}] {m.description}")
            for k, v in m.params.items():
                print(f"{'':24s}{k} = {v!r}")
        return 0
    try:
        cfg = load_config(args.config)
    except (FileNotFoundError, ValueError) as exc:
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
