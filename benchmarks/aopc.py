"""Speed of lrpkit's region perturbation / AOPC and ROAD imputation, as ratios measured side by side.

1. Throughput against the bare forward pass: ``region_perturbation`` (uniform replacement, all
   steps of all repeats) against a plain ``model(x)`` loop over the same number of (pre-built)
   images at the same batch size, on the scene CNN (``data/models/cnn/cnn.pt`` or a SceneCNN with
   random weights) and on a torchvision VGG16 at 224 x 224 (random weights).  Target: >= 0.8.
   Also against the same forwards through lrpkit's batch runner (worker threads on the CPU):
   the cost of building the perturbed images alone.
2. Against Quantus ``RegionPerturbation`` at equal settings (model, images, heatmaps, patch size,
   steps, constant replacement 0, one curve per image): the images each forwards (counted by a
   forward hook: both ``N (1 + L)``), the same curve (max |difference|) and the speed ratio, best
   of ``--reps`` runs interleaved with each other so that both see the same machine load.
3. ROAD noisy linear imputation (Rong et al. 2022): lrpkit's ``noisy_linear_impute`` (solver
   "auto": sparse direct per image on the CPU, batched conjugate gradients on accelerators; both
   timed) against the authors' per-image formulation (``lil_matrix`` + ``spsolve``, written here):
   the same values, the speed ratio.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/aopc.py [--quick] [--device cuda] [--reps 3]
      [--no-vgg] [--no-road]   (prints the load average next to each timing)
"""
from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch

import lrpkit
from lrpkit.evaluate import noisy_linear_impute, region_perturbation
from lrpkit.evaluate.perturbation import removal_ranks


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev, reps=1):
    best = float("inf")
    out = None
    for _ in range(reps):
        _sync(dev)
        t = time.perf_counter()
        out = fn()
        _sync(dev)
        best = min(best, time.perf_counter() - t)
    return best, out


def scene_cnn(dev):
    p = Path(__file__).resolve().parent.parent / "data" / "models" / "cnn" / "cnn.pt"
    if p.is_file():
        from lrpkit.models import load_cnn
        return load_cnn(p).to(dev).eval(), f"scene CNN ({p.name})"
    from lrpkit.models import SceneCNN
    torch.manual_seed(0)
    return SceneCNN(width=16, mult=[1, 2, 4, 8], hidden=128, input_size=112).to(dev).eval(), \
        "scene CNN (random weights, 112 px)"


def bare_forward(model, x, n_total, batch):
    """model(x) over n_total images in batches of `batch` (images pre-built, no perturbation)."""
    xb = x[torch.arange(batch, device=x.device) % x.shape[0]]
    out = None
    with torch.no_grad():
        done = 0
        while done < n_total:
            b = min(batch, n_total - done)
            out = model(xb[:b])
            done += b
    return out


def bare_forward_lrpkit_threads(model, x, n_total, batch):
    """The same forwards through lrpkit's batch runner (channels-last, worker threads on the CPU):
    what region perturbation would cost without building any perturbed image."""
    from lrpkit.evaluate.perturbation import _Forwarder, _Scorer

    fmt = torch.channels_last if x.device.type == "cpu" else torch.contiguous_format
    xb = x[torch.arange(batch, device=x.device) % x.shape[0]].contiguous(memory_format=fmt)
    t = torch.zeros(batch, dtype=torch.long, device=x.device)
    out = torch.empty(n_total, device=x.device)
    fwd = _Forwarder(_Scorer(model), out, x.device, n_total, batch, split=False)
    with torch.no_grad(), fwd:
        for b0 in range(0, n_total, batch):
            b = min(batch, n_total - b0)
            fwd.submit(torch.arange(b0, b0 + b, device=x.device), xb[:b], t[:b])
    return out


def load():
    one, five, fifteen = os.getloadavg()
    return f"load avg {one:.1f} / {five:.1f} / {fifteen:.1f}"


def throughput(name, model, x, steps, repeats, region_size, batch, dev, reps):
    h = torch.randn(x.shape[0], *x.shape[-2:], device=dev)
    kw = dict(region_size=region_size, steps=steps, repeats=repeats, replacement="uniform",
              batch_size=batch)
    region_perturbation(model, x[:1], h[:1], 0, **{**kw, "steps": 2, "repeats": 1})   # warm-up
    # the protocol's forwards: f(x^0) once per image, f(x^k) for k = 1..L per repeat
    n_total = x.shape[0] * (1 + repeats * steps)
    t_rp = t_fw = t_fl = float("inf")
    for _ in range(reps):                                    # interleaved: the same machine load
        t_rp = min(t_rp, timed(lambda: region_perturbation(model, x, h, 0, **kw), dev)[0])
        t_fw = min(t_fw, timed(lambda: bare_forward(model, x, n_total, batch), dev)[0])
        t_fl = min(t_fl, timed(lambda: bare_forward_lrpkit_threads(model, x, n_total, batch), dev)[0])
    ratio = t_fw / t_rp
    print(f"{name}: {x.shape[0]} img x {repeats} rep x {steps} steps + step 0 = {n_total} forwarded "
          f"images {tuple(x.shape[1:])}, batch {batch}: region_perturbation {t_rp:.2f} s; bare "
          f"model(x) loop {t_fw:.2f} s -> throughput ratio {ratio:.2f} (target >= 0.8); bare forward "
          f"through lrpkit's runner {t_fl:.2f} s -> {t_fl / t_rp:.2f} (cost of building the "
          f"perturbed images) [{load()}]")
    return ratio


class _Count:
    """Counts the images a model is called on (forward pre-hook; thread-safe)."""

    def __init__(self, model):
        self.n, self.lock = 0, threading.Lock()
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, module, args):
        with self.lock:
            self.n += int(args[0].shape[0])

    def remove(self):
        self.handle.remove()
        return self.n


def quantus_comparison(model, x, steps, region_size, dev, reps=2):
    import quantus

    model_cpu = model.to("cpu").eval()
    xc = x.cpu()
    y = model_cpu(xc).argmax(1)
    a = lrpkit.explain(model_cpu, xc, y, method="gradient_x_input")
    metric = quantus.RegionPerturbation(patch_size=region_size, regions_evaluation=steps, order="morf",
                                        perturb_baseline=0.0, normalise=False, disable_warnings=True,
                                        display_progressbar=False)

    def run_q():
        return metric(model=model_cpu, x_batch=xc.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                      device="cpu", softmax=False, batch_size=xc.shape[0])

    def run_l():
        return region_perturbation(model_cpu, xc, a, y, region_size=region_size, steps=steps,
                                   repeats=1, replacement="zero")

    # equal work: count the images each one forwards (untimed runs)
    c = _Count(model_cpu)
    curves = np.asarray(run_q())
    n_q = c.remove()
    c = _Count(model_cpu)
    ours = run_l()
    n_l = c.remove()
    before = load()
    t_q = t_l = float("inf")
    for _ in range(reps):                                    # interleaved: the same machine load
        t_q = min(t_q, timed(run_q, torch.device("cpu"))[0])
        t_l = min(t_l, timed(run_l, torch.device("cpu"))[0])
    drop = (ours.score.isel(step=0) - ours.score).isel(repeat=0).values[:, 1:]
    diff = float(np.abs(curves - drop).max())
    scale = float(np.abs(drop).max())
    print(f"Quantus RegionPerturbation ({xc.shape[0]} images {tuple(xc.shape[1:])}, patch {region_size}, "
          f"{steps} steps, baseline 0, CPU, best of {reps} interleaved): Quantus {t_q:.2f} s "
          f"({n_q} images forwarded, batches of {xc.shape[0]}), lrpkit {t_l:.2f} s ({n_l} images "
          f"forwarded, batches of {ours.attrs['batch_size']}) -> {t_q / t_l:.1f}x faster (target >= 5x); "
          f"curves max |diff| {diff:.2e} (curve scale {scale:.2f}) [{before}; after: {load()}]")
    # the same with one thread for both (no worker threads: batching and layout alone)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t_q1 = timed(run_q, torch.device("cpu"))[0]
        t_l1 = timed(run_l, torch.device("cpu"))[0]
    finally:
        torch.set_num_threads(threads)
    print(f"  the same on one thread each: Quantus {t_q1:.2f} s, lrpkit {t_l1:.2f} s -> "
          f"{t_q1 / t_l1:.1f}x (channels-last, cache-sized batches; no worker threads) [{load()}]")
    model.to(dev)
    return t_q / t_l, diff


def authors_impute(img, mask):
    """Rong et al.'s per-image formulation, written here with scipy: a ``lil_matrix`` filled offset
    by offset (diagonal: minus the in-image neighbour weights; removed neighbours: +weight; kept
    neighbours: -weight x value on the right-hand side), converted to CSC, ``spsolve`` for all
    channels.  ``img`` (C, H, W), ``mask`` (H, W) True = removed."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve

    from lrpkit.evaluate.road import NEIGHBOUR_WEIGHTS

    C, H, W = img.shape
    flat_mask = mask.reshape(-1)
    flat_img = img.reshape(C, -1)
    idx = np.flatnonzero(flat_mask)
    var = np.zeros(H * W, dtype=int)
    var[idx] = np.arange(len(idx))
    A = lil_matrix((len(idx), len(idx)))
    b = np.zeros((len(idx), C))
    total = np.ones(len(idx))
    for (dy, dx), w in NEIGHBOUR_WEIGHTS:
        yy, xx = idx // W + dy, idx % W + dx
        ok = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        q = (yy * W + xx)[ok]
        rows = np.flatnonzero(ok)
        known = ~flat_mask[q]
        b[rows[known]] -= w * flat_img[:, q[known]].T
        A[rows[~known], var[q[~known]]] = w
        total[~ok] -= w
    A[np.arange(len(idx)), np.arange(len(idx))] = -total
    sol = spsolve(A.tocsc(), b).reshape(len(idx), C)
    out = flat_img.copy()
    out[:, idx] = sol.T
    return out.reshape(C, H, W)


def road_comparison(x, n_masks, region_size, steps, dev):
    N = x.shape[0]
    h = torch.randn(N, *x.shape[-2:], device=dev)
    ranks = removal_ranks(h, x.shape, region_size=region_size, steps=steps, order="morf",
                          repeats=1, device=dev)[:, 0]
    ks = torch.linspace(1, steps, n_masks).round().int().to(dev)
    idx_n = torch.arange(N, device=dev).repeat_interleave(n_masks)
    idx_k = ks.repeat(N)
    xb = x[idx_n]
    mask = ranks[idx_n] < idx_k[:, None, None]
    noisy_linear_impute(xb[:2], mask[:2], noise=0.0)                          # warm-up
    xn, mn = xb.double().cpu().numpy(), mask.cpu().numpy()
    t_s, ref = timed(lambda: np.stack([authors_impute(a, m) for a, m in zip(xn, mn)]),
                     torch.device("cpu"))
    t_a, out = timed(lambda: noisy_linear_impute(xb, mask, noise=0.0), dev)        # solver="auto"
    t_c, out_cg = timed(lambda: noisy_linear_impute(xb, mask, noise=0.0, tol=1e-6, solver="cg"), dev)
    diff = float(np.abs(out.double().cpu().numpy() - ref).max())
    diff_cg = float(np.abs(out_cg.double().cpu().numpy() - ref).max())
    auto = "direct" if dev.type == "cpu" else "CG"
    print(f"ROAD imputation ({xb.shape[0]} images {tuple(x.shape[1:])}, {n_masks} masks per image "
          f"up to {steps} regions of {region_size}x{region_size}): authors' scipy formulation per "
          f"image {t_s:.2f} s; lrpkit auto ({auto}, {dev.type}) {t_a:.2f} s -> {t_s / t_a:.1f}x, "
          f"max |diff| {diff:.1e}; lrpkit batched CG ({dev.type}) {t_c:.2f} s -> {t_s / t_c:.2f}x, "
          f"max |diff| {diff_cg:.1e}")
    return t_s / t_a, diff


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (seconds)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-vgg", action="store_true")
    ap.add_argument("--no-road", action="store_true")
    ap.add_argument("--reps", type=int, default=2, help="interleaved repetitions (best of)")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    q = a.quick
    print(f"device {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}, {load()}")
    ratios = {}
    model, name = scene_cnn(dev)
    S = int(getattr(model, "input_size", 112))
    big = dev.type == "cuda"
    x = torch.randn(4 if q else (16 if big else 8), 3, S, S, device=dev)
    ratios["bare forward, scene CNN"] = throughput(
        name, model, x, steps=30 if q else (100 if big else 50), repeats=2 if q else (10 if big else 2),
        region_size=9, batch=256, dev=dev, reps=1 if q else a.reps)
    if not a.no_vgg:
        import torchvision
        vgg = torchvision.models.vgg16(weights=None).to(dev).eval()
        xv = torch.randn(8 if big else (2 if q else 1), 3, 224, 224, device=dev)
        ratios["bare forward, VGG16 224"] = throughput(
            "VGG16 (random weights)", vgg, xv, steps=100 if big else (5 if q else 10),
            repeats=2 if big else 1, region_size=9, batch=64 if big else 16, dev=dev, reps=1)
    try:
        ratios["Quantus"], _ = quantus_comparison(model, x[:4] if q else x[:8], steps=20 if q else 100,
                                                  region_size=8, dev=dev, reps=1 if q else a.reps)
    except ImportError:
        print("Quantus not installed: skipped (pip install quantus)")
    if not a.no_road:
        ratios["ROAD vs scipy per image"], _ = road_comparison(x[:2] if q else x[:8], 4 if q else 10,
                                                               region_size=9, steps=30 if q else 100, dev=dev)
    print("\nratios: " + ", ".join(f"{k}: {v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
