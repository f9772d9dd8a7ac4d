"""FGVis speed: optimisation steps per second with and without the defence (Wagner et al.,
CVPR 2019, Sec. 3.2), against a bare forward + backward pass of the same batch.

    .venv/bin/python benchmarks/fgvis.py                      # scene CNN, 16 images 112 x 112
    .venv/bin/python benchmarks/fgvis.py --models scene,alexnet,resnet50 --batch 8

Prints, per model, the seconds per step of (a) the bare pass ``model(x * m)`` + gradient to
``m``, (b) an FGVis step without the defence, (c) with the defence, each the median of
``--repeats`` rounds measured interleaved in one run, and the ratios ``defended / undefended``
(target <= 1.3) and ``step / bare``.  Random weights (no downloads).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def build(name: str, size: int):
    import torchvision.models as tvm

    from lrpkit.models import SceneCNN

    torch.manual_seed(0)
    if name == "scene":
        return SceneCNN(n_classes=6, width=16, mult=(1, 2, 4, 8), input_size=size).eval()
    if name == "alexnet":
        return tvm.alexnet(weights=None, num_classes=20).eval()
    if name == "vgg16":
        return tvm.vgg16(weights=None, num_classes=20).eval()
    if name == "resnet50":
        return tvm.resnet50(weights=None, num_classes=20).eval()
    raise SystemExit(f"unknown model {name!r}")


def bare_step(model, x, t):
    m = torch.ones_like(x, requires_grad=True)
    out = model(x * m)
    (g,) = torch.autograd.grad(out.log_softmax(1).gather(1, t[:, None]).sum(), m)
    return g


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="scene")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from lrpkit.fgvis import fgvis
    from lrpkit.fgvis.games import frozen

    print(f"batch {a.batch} x 3 x {a.size} x {a.size}, {a.steps} steps per round, "
          f"median of {a.repeats} rounds, {torch.get_num_threads()} threads")
    print(f"{'model':10s} {'bare s':>8s} {'off s/step':>10s} {'on s/step':>10s} "
          f"{'on/off':>7s} {'off/bare':>8s} {'on/bare':>8s} {'steps/s on':>10s}")
    for name in a.models.split(","):
        model = build(name, a.size)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(a.batch, 3, a.size, a.size, generator=g)
        t = torch.zeros(a.batch, dtype=torch.long)
        times = {"bare": [], "off": [], "on": []}
        kw = dict(game="deletion", steps=a.steps, sparsity=1.0)
        fgvis(model, x, t, defence=True, **{**kw, "steps": 1})   # warm-up
        for _ in range(a.repeats):
            with frozen(model), torch.enable_grad():
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    bare_step(model, x, t)
                times["bare"].append((time.perf_counter() - t0) / a.steps)
            for d, key in ((False, "off"), (True, "on")):
                # the steps' cost: a run of `steps` minus a run of 0 steps (fixed overhead: the
                # record pass, the scores of x and r, the final evaluation)
                t0 = time.perf_counter()
                fgvis(model, x, t, defence=d, **kw)
                t1 = time.perf_counter()
                fgvis(model, x, t, defence=d, **{**kw, "steps": 0})
                t2 = time.perf_counter()
                times[key].append(max((t1 - t0) - (t2 - t1), 1e-9) / a.steps)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name:10s} {med['bare']:8.4f} {med['off']:10.4f} {med['on']:10.4f} "
              f"{med['on'] / med['off']:7.2f} {med['off'] / med['bare']:8.2f} "
              f"{med['on'] / med['bare']:8.2f} {1 / med['on']:10.2f}")


if __name__ == "__main__":
    main()
