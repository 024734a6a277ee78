"""Train the ``roomtone`` denoiser (:mod:`roomtone.enhance.net`) on mixtures made on the fly
(:mod:`roomtone.enhance.training.data`), resumable from its checkpoint.

    python -m roomtone.enhance.training.train --out enhance/weights/roomtone.npz --minutes 60
    python -m roomtone.enhance.training.train --out ... --resume          # go on from the checkpoint

Loss (per item, on the 16 kHz STFT of the output and the target): mean squared error of the
power-law compressed magnitudes (``|.|^0.3``), plus that of the compressed complex spectra, plus
0.02 x the negative SI-SDR (dB) of the resynthesised signal (the GTCRN-style combination; see
TOOLCHAIN.md's anchors). AdamW, learning rate 1e-3 with warm-up and cosine decay, gradient
clipping at 1. The loop (:mod:`roomtone.models.training.loop`) keeps the checkpoint
(``checkpoints/NAME.ckpt.npz`` beside OUT, no pickle: the parameters, the step, the best
validation figure so far and the history; Adam's moments are not kept, so a resumed run warms up
again for 200 steps) and the shipped weights (``OUT``): the parameters at the best validation
SI-SDR (or STOI, ``--select stoi``), with their config beside them (:meth:`DenoiserJob.weights_config`).
"""

import argparse
import json
import sys

import numpy as np

from roomtone.enhance import net
from roomtone.enhance.training import data
from roomtone.models.training.loop import Evaluation


STOI_BANDS_HZ = tuple(150.0 * 2.0 ** (k / 3.0) for k in range(15))  # STOI's 15 1/3-octave bands, 150 Hz..3.8 kHz
STOI_FRAMES = 24  # 384 ms at the 16 ms hop: STOI's analysis segment
STOI_STRIDE = 4


def _stoi_bands():
    freqs = np.arange(net.BINS) * net.SAMPLE_RATE / net.N_FFT
    return np.stack([((freqs >= c * 2 ** (-1 / 6)) & (freqs < c * 2 ** (1 / 6))).astype(np.float32)
                     for c in STOI_BANDS_HZ])


def envelope_correlation_loss(y, s):
    """1 - the mean correlation of 1/3-octave band envelopes of the output ``y`` and the target
    ``s`` (STFT, (batch, frames, BINS) complex) over 384 ms segments, STOI's intermediate measure
    (Taal et al. 2011, without its clipping and resampling to 10 kHz); segments whose target
    energy is 40 dB under the loudest are left out, as STOI drops silent frames."""
    import jax.numpy as jnp

    bands = jnp.asarray(_stoi_bands())
    ey = jnp.sqrt(jnp.einsum("btf,kf->btk", y.real ** 2 + y.imag ** 2, bands) + 1e-10)
    es = jnp.sqrt(jnp.einsum("btf,kf->btk", s.real ** 2 + s.imag ** 2, bands) + 1e-10)
    frames = ey.shape[1]
    starts = np.arange(0, max(frames - STOI_FRAMES, 0) + 1, STOI_STRIDE)
    idx = jnp.asarray(starts[:, None] + np.arange(min(STOI_FRAMES, frames))[None, :])
    sy, ss = ey[:, idx], es[:, idx]  # (batch, segments, frames, bands)
    sy = sy - sy.mean(axis=2, keepdims=True)
    ss = ss - ss.mean(axis=2, keepdims=True)
    corr = jnp.sum(sy * ss, 2) / jnp.sqrt(jnp.sum(sy ** 2, 2) * jnp.sum(ss ** 2, 2) + 1e-12)  # (batch, seg, bands)
    energy = jnp.sum(es[:, idx] ** 2, axis=(2, 3))
    active = (energy > 1e-4 * jnp.max(energy, axis=1, keepdims=True)) & (energy > 1e-9)
    w = active.astype(corr.dtype)[..., None]
    return 1.0 - jnp.sum(corr * w) / jnp.maximum(jnp.sum(w) * corr.shape[-1], 1.0)


def loss_fn(model, noisy, clean, sdr_weight=0.02, stoi_weight=0.0):
    import jax.numpy as jnp

    from roomtone.models import stft

    w = net.window()
    samples = noisy.shape[-1]
    env = stft.window_envelope(w, w, net.HOP, stft.frame_count(samples, net.HOP, net.N_FFT))
    x = stft.stft(noisy, w, net.HOP)
    s = stft.stft(clean, w, net.HOP)
    y = net.enhance_spec(model, x)

    def compress(z):
        mag = jnp.abs(z) + 1e-8
        return mag ** net.COMPRESS, z * (mag ** (net.COMPRESS - 1.0))

    ym, yc = compress(y)
    sm, sc = compress(s)
    scale = jnp.sqrt(jnp.mean(jnp.abs(x) ** 2, axis=(1, 2), keepdims=True) + 1e-10) ** net.COMPRESS
    mag_loss = jnp.mean(((ym - sm) / scale) ** 2)
    cplx_loss = jnp.mean(jnp.abs((yc - sc) / scale) ** 2)
    out = stft.istft(y, w, net.HOP, env, samples)
    ref_energy = jnp.sum(clean ** 2, -1, keepdims=True)
    alpha = jnp.sum(out * clean, -1, keepdims=True) / (ref_energy + 1e-9)
    target = alpha * clean
    sdr = 10 * jnp.log10((jnp.sum(target ** 2, -1) + 1e-9) / (jnp.sum((out - target) ** 2, -1) + 1e-9))
    has_speech = (ref_energy[:, 0] > 1e-7).astype(out.dtype)
    sdr_loss = -jnp.sum(sdr * has_speech) / jnp.maximum(jnp.sum(has_speech), 1.0)
    value = mag_loss + cplx_loss + sdr_weight * sdr_loss
    if stoi_weight:
        value = value + stoi_weight * envelope_correlation_loss(y, s)
    return value


def make_step(sdr_weight=0.02, stoi_weight=0.0):
    from flax import nnx

    @nnx.jit
    def step(model, optimizer, noisy, clean):
        loss, grads = nnx.value_and_grad(lambda m: loss_fn(m, noisy, clean, sdr_weight, stoi_weight))(model)
        optimizer.update(model, grads)
        return loss

    return step


def evaluate(model, noisy, clean, batch=16, stoi=False):
    """SI-SDR (dB) of the model's outputs on the validation set: mean over items, and the noisy
    input's for comparison; with ``stoi``, also the outputs' mean STOI (PyPI ``pystoi``, the
    bench's measure), else None."""
    import jax

    run = jax.jit(net.denoise_fn(model, noisy.shape[-1]))
    outs = np.concatenate([np.asarray(run(noisy[i:i + batch])) for i in range(0, len(noisy), batch)])
    score = None
    if stoi:
        from pystoi import stoi as pystoi

        score = float(np.mean([pystoi(c, o, net.SAMPLE_RATE, extended=False) for c, o in zip(clean, outs)]))
    return float(np.mean(data.si_sdr_db(outs, clean))), float(np.mean(data.si_sdr_db(noisy, clean))), score


class DenoiserJob:
    """The denoiser's part of the loop (:mod:`roomtone.models.training.loop`): noisy/clean pairs
    drawn on the data thread, the step, the validation (SI-SDR, and STOI with ``--select stoi``)
    and the configs of its files."""

    def __init__(self, args, arch, pools, manifest, val, *, seed):
        self.args, self.arch, self.pools, self.manifest, self.val = args, arch, pools, manifest, val
        self.items = int(args.seconds * data.SAMPLE_RATE)
        self.rng = np.random.default_rng(seed)  # the data thread's alone
        self.use_stoi = args.select == "stoi"
        self.compiled = make_step(args.sdr_weight, args.stoi_weight)

    def batch(self):
        return data.batch(self.rng, self.pools["train"], self.pools["rir"], self.args.batch, self.items)

    def step(self, model, optimizer, batch):
        return self.compiled(model, optimizer, *batch)

    def evaluate(self, model):
        val, noisy_sdr, val_stoi = evaluate(model, *self.val, stoi=self.use_stoi)
        record = [round(val, 3)] + ([round(val_stoi, 4)] if self.use_stoi else [])
        text = f"val SI-SDR {val:.2f} dB (noisy {noisy_sdr:.2f})" + (f", STOI {val_stoi:.4f}" if self.use_stoi else "")
        return Evaluation(val_stoi if self.use_stoi else val, record, text, (val, noisy_sdr, val_stoi))

    def arrays(self, model):
        from roomtone.models import weights

        return weights.model_arrays(model)

    def checkpoint_config(self, model, step, evaluation, history):
        return {"architecture": self.arch.as_dict(), "sample_rate": net.SAMPLE_RATE, "select": self.args.select}

    def weights_config(self, model, step, evaluation, history):
        from roomtone.models import weights

        args = self.args
        val, noisy_sdr, val_stoi = evaluation.figures
        loss = f"compressed magnitude MSE + compressed complex MSE + {args.sdr_weight:g} x (-SI-SDR dB)"
        if args.stoi_weight:
            loss += f" + {args.stoi_weight:g} x (1 - band-envelope correlation)"
        return {"architecture": self.arch.as_dict(), "sample_rate": net.SAMPLE_RATE, "data": dict(self.manifest),
                "training": {"steps": step, "batch": args.batch, "item_seconds": args.seconds, "lr": args.lr,
                             "loss": loss, "history": "see checkpoints/*.json (step, train loss, val SI-SDR)",
                             "augmentation": "see roomtone.enhance.training.data", "distilled": False},
                "metrics": {"val_si_sdr_db": round(val, 3), "val_noisy_si_sdr_db": round(noisy_sdr, 3),
                            "val_items": args.val_items, "val_seed": args.val_seed, "val_part": args.val_part,
                            "val_snr_db": [0, 15], "selected_by": args.select, "command": " ".join(sys.argv),
                            **({"val_stoi": round(val_stoi, 4)} if val_stoi is not None else {})},
                "parameters": int(sum(np.asarray(v).size for v in weights.model_arrays(model).values()))}


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="weights path (.npz); the checkpoint goes beside it")
    p.add_argument("--data", default=str(data.DATA), help="the speech pool folder (../shared/data/speech)")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    p.add_argument("--steps", type=int, default=100000, help="most steps in all")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=2.0, help="training item length")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--embed", type=int, default=128)
    p.add_argument("--val-items", type=int, default=48)
    p.add_argument("--val-seed", type=int, default=1234,
                   help="seed of the validation mixtures (1234: bench_enhance's default set; another seed keeps "
                        "the bench's sets out of the selection)")
    p.add_argument("--init", help="start from these weights (.npz with its config), a fresh schedule")
    p.add_argument("--sdr-weight", type=float, default=0.02, help="weight of -SI-SDR (dB) in the loss")
    p.add_argument("--stoi-weight", type=float, default=0.0,
                   help="weight of the band-envelope correlation loss (STOI's measure, 1 - correlation)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 500, 200 on resume)")
    p.add_argument("--val-part", choices=("select", "evaluate"), default=None,
                   help="validate on one half of the held-out speakers and noises (data.held_out_part): "
                        "'select' keeps the other half for benchmarks/bench_enhance_sets.py")
    p.add_argument("--select", choices=("si_sdr", "stoi"), default="si_sdr",
                   help="the validation figure that picks the shipped weights (stoi needs pystoi)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.select == "stoi":
        import pystoi  # noqa: F401  (refuse before any work when absent)

    from flax import nnx

    from roomtone.models.training import loop

    arch = net.Architecture(hidden=args.hidden, embed=args.embed)
    pools = data.load_pools(args.data, music=True)
    man = data.manifest(pools)
    print(json.dumps({k: v for k, v in man.items() if not isinstance(v, list)}), flush=True)
    val = data.validation_set(pools, items=args.val_items, seed=args.val_seed, part=args.val_part)

    model, start_step, history, meta = loop.start(lambda: net.build_model(arch, nnx.Rngs(args.seed)),
                                                  out=args.out, resume=args.resume, init=args.init)
    best = None
    if meta:
        if meta.get("select", "si_sdr") == args.select:  # a figure of another kind does not compare
            best = meta["best"] if "best" in meta else meta["best_val_si_sdr_db"]
        print(f"resumed at step {start_step}, best {args.select} {best if best is not None else -1e9:.4g}", flush=True)
    elif args.init:
        print(f"starting from {args.init}", flush=True)
    total = max(args.steps, start_step + 1)
    warm = args.warmup if args.warmup is not None else (200 if start_step else 500)
    optimizer = loop.adamw(model, lr=args.lr, warmup=warm, decay_steps=total - start_step, end_lr=args.lr * 0.05,
                           weight_decay=1e-4)
    job = DenoiserJob(args, arch, pools, man, val, seed=args.seed + start_step)
    settings = loop.Loop(out=args.out, steps=total, minutes=args.minutes, eval_every=args.eval_every, log_every=50)
    result = loop.train(settings, job, model, optimizer, start_step=start_step, best=best, history=history)
    last = result.history[-1]  # the loop's evaluation at the last step
    print(f"done at step {result.step}: val SI-SDR {last[2]:.2f} dB" + (f", STOI {last[3]:.4f}" if job.use_stoi else "")
          + f", best {args.select} {result.best:.4g}", flush=True)


if __name__ == "__main__":
    main()
