"""Small synthetic test images shared by the Fisher-vector, FV-LRP and heatmap tests."""
import numpy as np

H, W = 48, 64


def stripes(n, vertical, seed=0, h=H, w=W):
    """``n`` float32 images ``(3, h, w)`` in [0, 1]: faint noise plus vertical (``vertical[i]``
    true) or horizontal stripes of a random period and phase."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        im = rng.random((3, h, w)) * 0.1
        yy, xx = np.mgrid[:h, :w]
        per = rng.uniform(2.5, 4.0)
        pat = np.sin((xx if vertical[i] else yy) / per + rng.uniform(0, 6)) > 0
        out.append(np.clip(im + 0.6 * pat, 0, 1))
    return np.stack(out).astype(np.float32)
