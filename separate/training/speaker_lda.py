"""Fit the fallback speaker embedding (:class:`roomtone.separate.voices.MelStatsEncoder`): a linear
discriminant projection of per-window log-mel statistics, fitted on the training speakers of the
speech pool (held-out speakers never read), shipped as ``separate/weights/melstats_lda.npz``.

    python -m roomtone.separate.training.speaker_lda

Features of a 1.5 s window (the GE2E front end's 40 mel bands at 16 kHz): the mean and the standard
deviation over its frames of the log-mel energies (80 values). Each training utterance is seen
through random EQ (+-6 dB tilt and bell) and, for a third of them, a measured room, so the
directions kept are the ones that tell speakers apart across channels (within-speaker scatter
includes the channel). Linear discriminant analysis (Fisher): the directions maximising between-
over within-speaker scatter, whitened; the top :data:`DIMENSIONS` kept.
"""

import argparse
import json

import numpy as np

from roomtone.models.training import speech
from roomtone.separate.voices import DIMENSIONS, mel_stats

OUT = "separate/weights/melstats_lda.npz"


def speaker_windows(rng, pools, views=3):
    """``(features (windows, 80), speaker index (windows,))`` of the training speakers."""
    feats, labels, names = [], [], {}
    for key, x in pools["train"]["speech"]:
        k = names.setdefault(key, len(names))
        for view in range(views):
            y = speech.eq(rng, x)
            if view and pools["rir"] and rng.random() < 0.33:
                y, _ = speech.reverb(rng, pools["rir"], y)
            _, f = mel_stats(y, hop_s=0.75)
            feats.append(f)
            labels.append(np.full(len(f), k))
    return np.concatenate(feats), np.concatenate(labels), len(names)


def fit_lda(features, labels, dimensions, shrink=1e-3):
    """(mean (80,), projection (80, dimensions)) of Fisher's LDA, the projection whitening the
    within-speaker scatter."""
    mean = features.mean(axis=0)
    x = features - mean
    classes = np.unique(labels)
    sw = np.zeros((x.shape[1], x.shape[1]))
    sb = np.zeros_like(sw)
    for c in classes:
        xc = x[labels == c]
        mc = xc.mean(axis=0)
        d = xc - mc
        sw += d.T @ d
        sb += len(xc) * np.outer(mc, mc)
    sw /= len(x)
    sb /= len(x)
    sw += shrink * np.trace(sw) / sw.shape[0] * np.eye(sw.shape[0])
    # whiten the within scatter, then the between scatter's principal directions
    evals, evecs = np.linalg.eigh(sw)
    white = evecs / np.sqrt(evals)
    b = white.T @ sb @ white
    bvals, bvecs = np.linalg.eigh(b)
    order = np.argsort(bvals)[::-1][:dimensions]
    return mean, white @ bvecs[:, order], bvals[order]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=OUT)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from roomtone.models import weights

    rng = np.random.default_rng(args.seed)
    pools = speech.load_pools()
    features, labels, speakers = speaker_windows(rng, pools)
    mean, projection, ratios = fit_lda(features, labels, DIMENSIONS)
    config = {"architecture": {"kind": "melstats-lda", "dimensions": DIMENSIONS}, "sample_rate": 16000,
              "features": "mean and std of 40 log-mel bands over 1.5 s windows",
              "dimensions": DIMENSIONS, "training_speakers": speakers, "windows": int(len(features)),
              "data": {k: v for k, v in speech.manifest(pools).items() if k.startswith("train_speech")},
              "discriminant_ratios": [round(float(r), 3) for r in ratios],
              "command": "python -m roomtone.separate.training.speaker_lda"}
    weights.save_weights(args.out, {"mean": mean.astype(np.float32), "projection": projection.astype(np.float32)},
                         config)
    print(json.dumps(config), flush=True)


if __name__ == "__main__":
    main()
