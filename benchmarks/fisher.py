"""Fisher-vector speed, measured side by side.

    python benchmarks/fisher.py [--model data/models/fisher/fv.joblib] [--repeat 5]

Prints
  * dense SIFT time for a 500x375 image (default settings: bin sizes 4/6/8, step 3);
  * FV encoding time per image against ``skimage.feature.fisher_vector`` on the same
    PCA-reduced descriptors and GMM (ratio ours / skimage; < 1 is faster);
  * FV-LRP time per image (each rule, both resolutions) against the full encoding of that image
    (SIFT + PCA + FV; target: at most 2x): both include the same SIFT extraction, which hides
    LRP's own cost, so next to it LRP alone (``FisherLRP.relevance_from_descriptors`` on the
    PCA-reduced features: closed-form relevances, bin projection, pixel map) against the FV
    computed from the same features.
Without ``--model`` a model with the default K and D is fitted on a few synthetic images.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _best(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def _image(h, w, seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((3, h, w)), (0, 2, 2))
    yy, xx = np.mgrid[:h, :w]
    img += 0.3 * (np.sin(xx / 5.0) > 0) * (yy < h / 2) + 0.3 * ((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 4) ** 2)
    return np.clip(img / img.max(), 0, 1)


def main(argv=None):
    from skimage.feature import fisher_vector

    from lrpkit.fisher import (FisherLRP, FisherVectorClassifier, FisherVectorEncoder, dense_sift, improve,
                               load_fisher, raw_fisher_vector)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)

    big = _image(375, 500)
    t_sift = _best(lambda: dense_sift(big), a.repeat)
    d, fr = dense_sift(big)
    print(f"dense SIFT 500x375: {t_sift * 1e3:.1f} ms for {len(fr)} descriptors (bin sizes 4/6/8, step 3)")

    if a.model:
        clf = load_fisher(a.model)
        print(f"model: {a.model}")
    else:
        imgs = [_image(120, 160, s) for s in range(12)]
        Y = np.array([[i % 2, 1 - i % 2] for i in range(12)])
        enc = FisherVectorEncoder(n_samples=20_000, gmm_max_iter=20)
        clf = FisherVectorClassifier(enc).fit(imgs, Y)
        print("model: defaults fitted on 12 synthetic images")
    enc = clf.encoder_
    K, D = enc.gmm_.means_.shape
    print(f"K={K}, D={D}, FV dims={enc.fv_dim}")

    for name, img in (("160x120 scene", _image(120, 160, 99)), ("500x375", big)):
        desc, frames = enc.sift(img)
        feats = enc.project(desc)
        t_sift = _best(lambda: enc.sift(img), a.repeat)
        t_ours = _best(lambda: improve(raw_fisher_vector(feats, enc.gmm_)), a.repeat)
        t_sk = _best(lambda: fisher_vector(feats, enc.gmm_, improved=True), a.repeat)
        t_enc = _best(lambda: enc.transform([img]), a.repeat)
        print(f"\n[{name}] M={len(frames)} local features; SIFT alone {t_sift * 1e3:.1f} ms")
        print(f"  FV from descriptors: ours {t_ours * 1e3:.1f} ms, skimage {t_sk * 1e3:.1f} ms, "
              f"ratio ours/skimage = {t_ours / t_sk:.2f}")
        print(f"  full encoding (SIFT + PCA + FV): {t_enc * 1e3:.1f} ms")
        print("  FV-LRP  rule     res    | full: SIFT + LRP + map, / encoding (target <= 2) "
              "| LRP only: from features, / FV from descriptors")
        for rule in ("epsilon", "absolute", "plain"):
            lrp = FisherLRP(clf, rule=rule)
            for res in ("feature", "bin"):
                t_lrp = _best(lambda: lrp.relevance(img, 0, res).pixel_map(res), a.repeat)
                t_own = _best(lambda: lrp.relevance_from_descriptors(desc, frames, 0, res, feats=feats)
                              .pixel_map(res), a.repeat)
                print(f"  FV-LRP  {rule:8s} {res:7s}| full {t_lrp * 1e3:7.1f} ms, ratio {t_lrp / t_enc:5.2f}"
                      f"           | LRP only {t_own * 1e3:7.1f} ms, ratio {t_own / t_ours:5.2f}")


if __name__ == "__main__":
    main()
