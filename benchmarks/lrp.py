"""LRP speed against a plain input gradient (and against zennit), measured side by side.

    python benchmarks/lrp.py                      # the zoo below, 224 px, batch 4, 5 repeats
    python benchmarks/lrp.py --quick              # 112 px, batch 2, 2 repeats: ~1 minute
    python benchmarks/lrp.py --models resnet50 --repeats 3 --no-zennit
    python benchmarks/lrp.py --models vgg16 scenecnn --composites epsilon epsilon_plus_flat

Models: torchvision's ``resnet50``, ``densenet121``, ``mobilenet_v2``, ``efficientnet_b0`` and
``convnext_tiny`` (random weights, ``weights=None``, batch-norm statistics calibrated on random
images; batch ``--batch`` x 3 x ``--size`` x ``--size``), plus ``vgg16`` and lrpkit's
``scenecnn`` (the trained checkpoint ``data/models/cnn/cnn.pt`` or ``data/models/cnn.pt`` when
one exists, or ``--cnn PATH``, else a random ``SceneCNN()`` at its 96 x 96 input size).

For every model it times a plain input gradient (``lrpkit.lrp.input_gradient``: one forward,
one backward, parameters not differentiated), ``lrpkit.lrp.lrp`` with each composite
(default ``epsilon`` and ``alpha2_beta1``: one forward, one backward) and, when zennit is
installed (the ``dev`` extra), zennit's equivalent (``Gradient`` attributor with a
``LayerMapComposite`` of ``Epsilon`` on convolutions and dense layers, resp.
``EpsilonAlpha2Beta1``; canonizers ``ResNetCanonizer`` / ``VGGCanonizer`` /
``SequentialMergeBatchNorm``; one call = entering the attributor, the attribution and leaving
it, as lrpkit's call canonizes and restores the model each time; zennit runs on a copy of the
model, since it may leave a model broken when it fails).  A method that raises is reported as
``unsupported: <message>`` and the rest goes on.

Repeats are interleaved (gradient, method 1, method 2, ..., gradient, ...) so that machine
load hits all methods alike; medians are reported, and only the ratios to the gradient are
meaningful on a shared machine.  CPU time (``time.process_time``, one torch thread by
default) is next to wall time: it is much less sensitive to other processes.  Peak memory: the
peak resident set size *above the resident size before the call* (Linux: ``malloc_trim`` gives
freed heap memory back, ``/proc/self/clear_refs`` resets ``VmHWM``), median over repeats; n/a
elsewhere.  ``sum R / f`` (the median over the batch of the relevance's sum over the target's
logit) flags a heatmap that blows up; with random, non-zero biases it need not be 1.

Targets (Zoo issue): LRP epsilon <= 1.3x and alpha2_beta1 <= 2.5x the gradient's time.
"""
from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrpkit.lrp import input_gradient, lrp  # noqa: E402

ZOO = ["resnet50", "densenet121", "mobilenet_v2", "efficientnet_b0", "convnext_tiny"]
MODELS = ZOO + ["vgg16", "scenecnn"]
COMPOSITES = ["epsilon", "alpha2_beta1"]
TARGETS = {"epsilon": 1.3, "alpha2_beta1": 2.5}


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


def calibrate_batchnorm(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Batch-norm running statistics of ``x`` (one training-mode forward, cumulative
    average), so that a random-weight model's activations keep their scale."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        model.train()(x)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def build(name: str, size: int, batch: int, cnn_path: str | None):
    """(label, model in eval mode, input batch)."""
    torch.manual_seed(0)
    if name != "scenecnn":
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        calibrate_batchnorm(model, torch.randn(max(batch, 4), 3, size, size))
        return (f"{name} (random, BN calibrated, {batch}x3x{size}x{size})", model.eval(),
                torch.randn(batch, 3, size, size))
    from lrpkit.models import SceneCNN, load_cnn

    cands = [Path(cnn_path)] if cnn_path else [ROOT / "data" / "models" / "cnn" / "cnn.pt",
                                                ROOT / "data" / "models" / "cnn.pt"]
    path = next((p for p in cands if p.exists()), cands[0])
    if path.exists():
        model, tag = load_cnn(path).eval(), f"trained {path.name}"
    else:
        model, tag = SceneCNN().eval(), "random init"
    s = model.input_size
    return f"SceneCNN ({tag}, {batch}x3x{s}x{s})", model, torch.randn(batch, 3, s, s)


def zennit_method(name: str, model, composite: str, epsilon: float = 0.01):
    """A function computing zennit's relevance for ``composite`` on a copy of ``model``, or
    None when zennit has no equivalent."""
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonAlpha2Beta1, LayerMapComposite, layer_map_base
    from zennit.rules import Epsilon
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer
    from zennit.types import Convolution

    canon = (ResNetCanonizer() if name.startswith(("resnet", "resnext", "wide_resnet"))
             else VGGCanonizer() if name.startswith("vgg") else SequentialMergeBatchNorm())
    if composite == "epsilon":
        comp = LayerMapComposite(layer_map=layer_map_base() + [
            (Convolution, Epsilon(epsilon=epsilon)), (torch.nn.Linear, Epsilon(epsilon=epsilon))],
            canonizers=[canon])
    elif composite == "alpha2_beta1":
        comp = EpsilonAlpha2Beta1(epsilon=epsilon, canonizers=[canon])
    else:
        return None
    twin = copy.deepcopy(model)

    def run(x, target):
        onehot = torch.zeros(x.shape[0], twin(x[:1]).shape[1], dtype=x.dtype)
        onehot[torch.arange(x.shape[0]), target] = 1.0
        with Gradient(model=twin, composite=comp) as attributor:
            _, rel = attributor(x, onehot)
        return rel
    return run


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:160]}{'...' if len(msg) > 160 else ''}"


def _sum_ratio(R: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> float:
    f = logits.gather(1, target[:, None])[:, 0]
    return float((R.flatten(1).sum(1) / f).median())


def run(label, name, model, x, repeats, composites, use_zennit):
    """Print one model's table; returns {method: (cpu ratio, wall ratio, status)}."""
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    fns = {"gradient": lambda: input_gradient(model, x, target)}
    for c in composites:
        fns[c] = (lambda c=c: lrp(model, x, target, c))
    if use_zennit:
        for c in composites:
            z = zennit_method(name, model, c)
            if z is not None:
                fns[f"zennit {c}"] = (lambda z=z: z(x, target))
    status, sums = {}, {}
    for k, f in list(fns.items()):          # warm-up; a method that raises is reported
        try:
            R = f()
            sums[k] = _sum_ratio(R, logits, target) if k != "gradient" else None
        except Exception as e:  # noqa: BLE001 -- any failure is a result here
            status[k] = f"unsupported: {_short(e)}"
            del fns[k]
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
    tg, cg = statistics.median(times["gradient"]), statistics.median(cpus["gradient"])
    mg = statistics.median(mems["gradient"]) if mems["gradient"] else None
    print(f"\n{label}: median of {repeats} interleaved repeats, torch threads="
          f"{torch.get_num_threads()}", flush=True)
    print(f"{'method':<24}{'wall [s]':>10}{'x grad':>8}{'cpu [s]':>10}{'x grad':>8}"
          f"{'peak [MiB]':>12}{'x grad':>8}{'sum R / f':>12}")
    out = {}
    for k in ["gradient", *composites, *(f"zennit {c}" for c in composites)]:
        if k in status:
            print(f"{k:<24}{status[k]}")
            out[k] = (None, None, status[k])
            continue
        if k not in fns:
            continue
        t, c = statistics.median(times[k]), statistics.median(cpus[k])
        m = statistics.median(mems[k]) if mems[k] else None
        mr = (m / mg) if (m is not None and mg) else None
        ms = f"{m:12.1f}" if m is not None else f"{'n/a':>12}"
        mrs = f"{mr:8.2f}" if mr is not None else f"{'n/a':>8}"
        ss = f"{sums[k]:12.4g}" if sums.get(k) is not None else f"{'':>12}"
        print(f"{k:<24}{t:10.3f}{t / tg:8.2f}{c:10.3f}{c / cg:8.2f}{ms}{mrs}{ss}", flush=True)
        out[k] = (c / cg, t / tg, "ok")
    return out


def summary(results: dict, composites: list[str]) -> None:
    """One table, models x methods: CPU-time ratio to the gradient; and lrpkit / zennit."""
    print("\nCPU time / input gradient (median); lrpkit / zennit in brackets; "
          "targets: " + ", ".join(f"{c} <= {t}x" for c, t in TARGETS.items() if c in composites))
    cols = [*composites, *(f"zennit {c}" for c in composites)]
    print(f"{'model':<18}" + "".join(f"{c:>26}" for c in cols))
    for model, res in results.items():
        cells = []
        for c in cols:
            r, _, st = res.get(c, (None, None, "n/a"))
            if r is None:
                cells.append(("unsupported" if st.startswith("unsupported") else st)[:25])
                continue
            z = res.get(f"zennit {c}", (None,))[0]
            flag = " !" if c in TARGETS and r > TARGETS[c] else ""
            cells.append(f"{r:.2f}x{flag}" + (f" [{r / z:.2f}]" if z and not c.startswith("zennit")
                                                else ""))
        print(f"{model:<18}" + "".join(f"{c:>26}" for c in cells))
    print("(! : above the target)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=ZOO, choices=MODELS)
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5; "
                                                                 "--quick: 2)")
    ap.add_argument("--size", type=int, default=None, help="input size (default 224; --quick: 112)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 4; --quick: 2)")
    ap.add_argument("--quick", action="store_true",
                    help="a few minutes: 112 px, batch 2, 2 repeats (ratios are rougher)")
    ap.add_argument("--composites", nargs="+", default=COMPOSITES)
    ap.add_argument("--no-zennit", action="store_true", help="skip zennit even when installed")
    ap.add_argument("--cnn", default=None, help="SceneCNN checkpoint (default data/models/cnn/cnn.pt)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: steadier on a shared machine)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    size = args.size or (112 if args.quick else 224)
    batch = args.batch or (2 if args.quick else 4)
    torch.set_num_threads(args.threads)
    use_zennit = not args.no_zennit
    if use_zennit:
        try:
            import zennit  # noqa: F401
        except ImportError:
            print("zennit is not installed (pip install -e '.[dev]'): lrpkit only")
            use_zennit = False
    results = {}
    for m in args.models:
        label, model, x = build(m, size, batch, args.cnn)
        reps = repeats if m != "scenecnn" else 4 * repeats
        results[m] = run(label, m, model, x, reps, args.composites, use_zennit)
        del model, x
        gc.collect()
    summary(results, args.composites)


if __name__ == "__main__":
    main()
