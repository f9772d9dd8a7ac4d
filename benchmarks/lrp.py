"""LRP speed and memory against a plain input gradient, measured side by side.

    python benchmarks/lrp.py                 # VGG16 (random weights, 1x3x224x224) and SceneCNN
    python benchmarks/lrp.py --repeats 3 --models scenecnn

For every model it prints the median wall time of a plain input gradient
(``lrpkit.lrp.input_gradient``: one forward, one backward, parameters not differentiated)
and of each LRP composite (``lrpkit.lrp.lrp``: one forward, one backward), with their ratio.
Repeats are interleaved (gradient, composite 1, composite 2, ..., gradient, ...) so that
machine load hits all methods alike; only the ratios are meaningful on a shared machine.
CPU time (``time.process_time``, one torch thread by default) is reported next to wall time:
it is much less sensitive to other processes competing for the cores.

Peak memory: for each method the peak resident set size *above the resident size before the
call* (Linux: ``malloc_trim`` returns freed heap memory to the system, ``/proc/self/clear_refs``
resets ``VmHWM``, which is read from ``/proc/self/status`` after the call), median over repeats; the model's weights and the input are not counted.  On
other systems it is reported as n/a.  The target is LRP <= 1.2x the gradient's time and
<= 1.5x its peak memory.

The SceneCNN is the trained checkpoint ``data/models/cnn/cnn.pt`` or ``data/models/cnn.pt``
when one exists (or ``--cnn PATH``), else a randomly initialised ``SceneCNN()`` at its 96x96 input size.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrpkit.lrp import input_gradient, lrp  # noqa: E402

COMPOSITES = ["epsilon", "alpha2_beta1", "alpha1_beta0", "epsilon_plus", "epsilon_plus_flat",
              "epsilon_alpha2_beta1_flat"]


def _kb(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


try:
    import ctypes

    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _LIBC = None


def measure(fn) -> tuple[float, float, float | None]:
    """(wall seconds, CPU seconds, peak MiB above the RSS before the call) of one call."""
    gc.collect()
    if _LIBC is not None:  # give freed heap memory back, so new allocations show in the RSS
        _LIBC.malloc_trim(0)
    ok = _reset_peak()
    rss0 = _kb("VmRSS")
    c0 = time.process_time()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    peak = _kb("VmHWM")
    del out
    mem = (peak - rss0) / 1024 if ok and peak is not None and rss0 is not None else None
    return dt, dc, mem


def build(name: str, cnn_path: str | None):
    if name == "vgg16":
        import torchvision

        torch.manual_seed(0)
        return "VGG16 (random, 1x3x224x224)", torchvision.models.vgg16().eval(), torch.randn(1, 3, 224, 224)
    from lrpkit.models import SceneCNN, load_cnn

    cands = [Path(cnn_path)] if cnn_path else [ROOT / "data" / "models" / "cnn" / "cnn.pt",
                                                ROOT / "data" / "models" / "cnn.pt"]
    path = next((p for p in cands if p.exists()), cands[0])
    if path.exists():
        model, tag = load_cnn(path).eval(), f"trained {path.name}"
    else:
        torch.manual_seed(0)
        model, tag = SceneCNN().eval(), "random init"
    s = model.input_size
    return f"SceneCNN ({tag}, 1x3x{s}x{s})", model, torch.randn(1, 3, s, s)


def run(name, model, x, repeats, composites):
    target = int(model(x).argmax())
    fns = {"gradient": lambda: input_gradient(model, x, target)}
    for c in composites:
        fns[c] = (lambda c=c: lrp(model, x, target, c))
    for f in fns.values():  # warm-up
        f()
    times = {k: [] for k in fns}
    cpus = {k: [] for k in fns}
    mems = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t, c, m = measure(f)
            times[k].append(t)
            cpus[k].append(c)
            if m is not None:
                mems[k].append(m)
    tg = statistics.median(times["gradient"])
    cg = statistics.median(cpus["gradient"])
    mg = statistics.median(mems["gradient"]) if mems["gradient"] else None
    print(f"\n{name}: median of {repeats} interleaved repeats, torch threads={torch.get_num_threads()}")
    print(f"{'method':<28}{'wall [s]':>10}{'x grad':>8}{'cpu [s]':>10}{'x grad':>8}"
          f"{'peak [MiB]':>12}{'x grad':>8}")
    rows = []
    for k in fns:
        t = statistics.median(times[k])
        c = statistics.median(cpus[k])
        m = statistics.median(mems[k]) if mems[k] else None
        mr = (m / mg) if (m is not None and mg) else None
        rows.append((k, t, t / tg, c, c / cg, m, mr))
        ms = f"{m:12.1f}" if m is not None else f"{'n/a':>12}"
        mrs = f"{mr:8.2f}" if mr is not None else f"{'n/a':>8}"
        print(f"{k:<28}{t:10.3f}{t / tg:8.2f}{c:10.3f}{c / cg:8.2f}{ms}{mrs}")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["vgg16", "scenecnn"],
                    choices=["vgg16", "scenecnn"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--composites", nargs="+", default=COMPOSITES)
    ap.add_argument("--cnn", default=None, help="SceneCNN checkpoint (default data/models/cnn/cnn.pt)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: steadier on a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for m in args.models:
        name, model, x = build(m, args.cnn)
        reps = args.repeats if m == "vgg16" else max(args.repeats, 4 * args.repeats)
        run(name, model, x, reps, args.composites)


if __name__ == "__main__":
    main()
