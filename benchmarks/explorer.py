"""Explorer latency: from a change of composite, method or image to the new heatmap on screen.

    python benchmarks/explorer.py                          # scene CNN of default.yaml's architecture
    python benchmarks/explorer.py --cnn smoke              # the smoke config's tiny CNN (32 px)
    python benchmarks/explorer.py --config configs/default.yaml   # a config's own trained models
    python benchmarks/explorer.py --old HEAD~1             # also the explorer of that git revision

Set-up.  With ``--config``, that config's scenes and trained CNN.  Without, the smoke config's
scenes (``configs/smoke.yaml``: 60 / 20 / 30 images, a second to generate) in ``--workdir``
and a scene CNN trained on them for one epoch, with ``configs/default.yaml``'s architecture
(128 px scaled, 112 px centre crop, width 16, four conv stages: the explorer's cost depends on
the architecture and input size, not on the weights), or the smoke CNN (``--cnn smoke``).
Both are reused on the next run.

Measured.  An :class:`lrpkit.widgets.Explorer` (``debounce=0``, the default perturbation
curve: 20 steps of 9 x 9 regions, 3 random repeats) shows LRP (the config's composite); then,
``--repeats`` times each (default 5), one change of the LRP composite, of the image (LRP), and
of the method from ``sensitivity`` back to ``lrp``.  Each time is wall-clock from setting the
widget's value (in this, the "kernel" thread) to the heatmap view's PNG being replaced (polled
every millisecond), the explorer idle before each change (curve included); printed: the median
per kind and over all LRP recomputes, and the median full recompute (heatmap, then curve).
"during curve": a composite change made while the previous change's curve is still being
computed (it is cancelled at its next batch of perturbed images).
The process's CPU time per change is printed beside it: the cores may be shared with other
jobs, which wall time includes.  Torch uses its default thread count (the machine's cores).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrpkit import pipeline  # noqa: E402
from lrpkit.config import load_config  # noqa: E402

COMPOSITES = ["epsilon", "alpha2_beta1", "epsilon_plus_flat", "alpha1_beta0", "zplus", "epsilon_gamma"]


def prepare(workdir: Path, cnn: str) -> Path:
    """A config over the smoke scenes with a trained CNN (``cnn``: "default" or "smoke")."""
    path = workdir / f"explorer-{cnn}.yaml"
    data = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    data["paths"] = {"scenes": str(workdir / "scenes"), "models": str(workdir / f"models-{cnn}"),
                     "reports": str(workdir / "reports")}
    if cnn == "default":
        arch = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())["cnn"]
        data["cnn"] = {**arch, "epochs": 1, "checkpoints": [0, 1]}
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(path)
    if not pipeline.scenes_current(cfg):
        pipeline.make_scenes(cfg)
    pipeline.train_models(cfg, only=("cnn",))
    return path


def _old_explorer(rev: str):
    """The ``Explorer`` class of ``lrpkit/widgets.py`` at git revision ``rev`` (the explorer
    before it was split into a package), imported as ``lrpkit._old_widgets``."""
    src = subprocess.run(["git", "show", f"{rev}:lrpkit/widgets.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    f = Path(tempfile.mkdtemp()) / "_old_widgets.py"
    f.write_text(src)
    spec = importlib.util.spec_from_file_location("lrpkit._old_widgets", f)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.Explorer


class _Driver:
    """Sets the explorer's widgets (new package or old module) and reads its heatmap view."""

    def __init__(self, ex, old: bool) -> None:
        self.ex, self.old = ex, old

    def wait(self) -> None:
        self.ex.wait(600)

    def set_composite(self, value: str) -> None:
        ctl = self.ex._param_widgets["composite"] if self.old else self.ex.form()["composite"]
        ctl.value = value

    def images(self) -> list[int]:
        return [i for _, i in self.ex.image.options if i >= 0]

    def shown(self, change) -> None:
        """Make ``change`` and return once its heatmap is shown (the curve may still run)."""
        before = self.ex.heatmap_view.value
        change()
        while self.ex.heatmap_view.value is before:
            time.sleep(0.001)

    def timed(self, change, busy: bool = False) -> tuple[float, float, float]:
        """(seconds to the new heatmap, seconds to the end, CPU seconds of the process);
        ``busy``: the change comes while the previous one's curve is being computed."""
        if not busy:
            self.wait()
        before = self.ex.heatmap_view.value
        c0, t0 = time.process_time(), time.perf_counter()
        change()
        while self.ex.heatmap_view.value is before:
            time.sleep(0.001)
        shown = time.perf_counter() - t0
        self.wait()
        return shown, time.perf_counter() - t0, time.process_time() - c0


def measure(explorer_cls, config: Path, repeats: int, old: bool) -> dict[str, list[tuple]]:
    ex = explorer_cls(str(config), debounce=0)
    d = _Driver(ex, old)
    d.wait()
    out: dict[str, list[tuple]] = {"composite": [], "image": [], "method": [], "during curve": []}
    current = (ex._param_widgets if old else ex.form().controls)["composite"].value
    comps = [c for c in COMPOSITES if c != current]
    comp = [comps[i % len(comps)] for i in range(repeats + 1)]
    imgs = d.images()
    img = [imgs[(i + 1) % len(imgs)] for i in range(repeats)]
    for i in range(repeats):
        out["composite"].append(d.timed(lambda c=comp[i]: d.set_composite(c)))
    for i in range(repeats):
        out["image"].append(d.timed(lambda v=img[i]: setattr(ex.image, "value", v)))
    for _ in range(repeats):
        d.timed(lambda: setattr(ex.method, "value", "sensitivity"))
        out["method"].append(d.timed(lambda: setattr(ex.method, "value", "lrp")))
    if not old:   # the old explorer shows nothing before its curve: it is never "during"
        for i in range(repeats):
            d.wait()
            d.shown(lambda c=comp[i + 1]: d.set_composite(c))
            out["during curve"].append(d.timed(lambda c=comp[i]: d.set_composite(c), busy=True))
    return {k: v for k, v in out.items() if v}


def report(label: str, res: dict[str, list[tuple]]) -> None:
    print(f"\n{label}")
    print(f"  {'change':<12} {'heatmap shown':>14} {'all (curve)':>12} {'CPU':>8}   (medians, s)")
    for kind, rows in res.items():
        s, a, c = (statistics.median(r[k] for r in rows) for k in range(3))
        print(f"  {kind:<12} {s:>14.3f} {a:>12.3f} {c:>8.3f}   n={len(rows)}: "
              + " ".join(f"{r[0]:.2f}" for r in rows))
    lrp = [r[0] for rows in res.values() for r in rows]
    print(f"  LRP recompute, heatmap shown: median {statistics.median(lrp):.3f} s over all "
          f"{len(lrp)} changes above (min {min(lrp):.3f}, max {max(lrp):.3f})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, help="a config with scenes and a trained CNN")
    ap.add_argument("--cnn", choices=["default", "smoke"], default="default",
                    help="without --config: the CNN architecture to train on the smoke scenes")
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "lrpkit-explorer-bench")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--old", metavar="REV", help="also measure the explorer of this git revision")
    args = ap.parse_args(argv)
    config = args.config or prepare(args.workdir, args.cnn)
    cfg = load_config(config)
    model = pipeline.load_cnn(cfg)
    import torch

    print(f"config {config}; CNN {pipeline.cnn_path(cfg)} ({model.meta.get('input_size')} px input); "
          f"torch threads {torch.get_num_threads()}; cores {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    from lrpkit.widgets import Explorer

    report("lrpkit.widgets.Explorer", measure(Explorer, config, args.repeats, old=False))
    if args.old:
        report(f"old explorer ({args.old}:lrpkit/widgets.py)",
               measure(_old_explorer(args.old), config, args.repeats, old=True))


if __name__ == "__main__":
    main()
