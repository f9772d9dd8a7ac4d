"""CPU throughput of the main job's torch work: glibc's allocator settings and the training forward.

    .venv/bin/python benchmarks/runtime.py             # scene CNN training steps, 64 x 112 x 112
    .venv/bin/python benchmarks/runtime.py --steps 8 --rounds 3

Two comparisons, each measured side by side in one run (rounds interleaved, medians printed):

1. **Allocator** (:mod:`lrpkit.runtime`): the same training steps in a fresh child process with
   glibc's defaults and with :data:`lrpkit.runtime.MALLOC_ENV` (no ``mmap`` per large block, no heap
   trimming).  Prints wall, user and system CPU seconds of each and the ratio ``default / tuned``.
2. **Training forward** (:func:`lrpkit.models.train._train_forward`): ``ReLU -> MaxPool`` run as
   ``MaxPool -> ReLU`` against the model's own forward, in this process.

Random weights and inputs; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time, torch
from lrpkit.models.cnn import SceneCNN
from lrpkit.models.train import hinge_loss
steps, batch = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
m = SceneCNN(6, width=16, mult=(1, 2, 4, 8), input_size=112).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.randn(batch, 3, 112, 112).contiguous(memory_format=torch.channels_last)
y = (torch.rand(batch, 6) > 0.7).float()
def step():
    loss = hinge_loss(m(x), y); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
step()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(json.dumps({"wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime}))
"""


def child(steps: int, batch: int, tuned: bool) -> dict:
    from lrpkit.runtime import MALLOC_ENV

    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    if tuned:
        env.update(MALLOC_ENV)
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(batch)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def forward_rounds(steps: int, batch: int, rounds: int) -> tuple[float, float]:
    import torch

    from lrpkit.models.cnn import SceneCNN
    from lrpkit.models.train import _train_forward, hinge_loss

    torch.manual_seed(0)
    m = SceneCNN(6, width=16, mult=(1, 2, 4, 8), input_size=112).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 112, 112).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 6) > 0.7).float()

    def run(fwd) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            m.zero_grad(set_to_none=True)
            hinge_loss(fwd(x), y).backward()
        return time.perf_counter() - t0

    run(m), run(lambda v: _train_forward(m, v))          # warm-up
    plain, fast = [], []
    for _ in range(rounds):
        plain.append(run(m))
        fast.append(run(lambda v: _train_forward(m, v)))
    return statistics.median(plain), statistics.median(fast)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10, help="training steps per measurement")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are printed)")
    a = ap.parse_args(argv)
    from lrpkit.runtime import tune_malloc

    runs: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(a.rounds):
        for tuned in (False, True):
            runs[tuned].append(child(a.steps, a.batch, tuned))
    med = {t: {k: statistics.median(r[k] for r in runs[t]) for k in ("wall", "user", "sys")} for t in runs}
    print(f"scene CNN training steps ({a.steps} x batch {a.batch}, 112 px), medians of {a.rounds} rounds")
    print(f"{'allocator':<12}{'wall s':>9}{'user s':>9}{'sys s':>9}")
    for t, name in ((False, "glibc default"), (True, "lrpkit.runtime")):
        print(f"{name:<12}{med[t]['wall']:9.2f}{med[t]['user']:9.2f}{med[t]['sys']:9.2f}")
    print(f"default / tuned: wall {med[False]['wall'] / med[True]['wall']:.2f}x, "
          f"CPU {(med[False]['user'] + med[False]['sys']) / (med[True]['user'] + med[True]['sys']):.2f}x")
    tune_malloc(children=False)
    plain, fast = forward_rounds(a.steps, a.batch, a.rounds)
    print(f"training forward+backward: model(x) {plain:.2f} s, _train_forward {fast:.2f} s "
          f"-> {plain / fast:.2f}x")


if __name__ == "__main__":
    main()
