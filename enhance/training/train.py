"""Train the ``roomtone`` denoiser (:mod:`roomtone.enhance.net`) on mixtures made on the fly
(:mod:`roomtone.enhance.training.data`), resumable from its checkpoint.

    python -m roomtone.enhance.training.train --out enhance/weights/roomtone.npz --minutes 60
    python -m roomtone.enhance.training.train --out ... --resume          # go on from the checkpoint

Loss (per item, on the 16 kHz STFT of the output and the target): mean squared error of the
power-law compressed magnitudes (``|.|^0.3``), plus that of the compressed complex spectra, plus
0.02 x the negative SI-SDR (dB) of the resynthesised signal (the GTCRN-style combination; see
TOOLCHAIN.md's anchors). AdamW, learning rate 1e-3 with warm-up and cosine decay, gradient
clipping at 1. The checkpoint (``checkpoints/NAME.ckpt.npz`` beside OUT, no pickle) holds the parameters, the step, the
best validation SI-SDR so far; Adam's moments are not kept (a resumed run warms up again for 200
steps). The shipped weights (``OUT``) are the parameters at the best validation SI-SDR, with their
config beside them (:func:`roomtone.models.weights.save_weights`).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from roomtone.enhance import net
from roomtone.enhance.training import data


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


def main(argv=None):
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
    args = p.parse_args(argv)
    use_stoi = args.select == "stoi"
    if use_stoi:
        import pystoi  # noqa: F401  (refuse before any work when absent)

    import optax
    from flax import nnx

    from roomtone.models import weights

    ckpt = os.path.join(os.path.dirname(os.path.abspath(args.out)), "checkpoints",
                        os.path.basename(os.path.splitext(args.out)[0]) + ".ckpt.npz")
    os.makedirs(os.path.dirname(ckpt), exist_ok=True)
    arch = net.Architecture(hidden=args.hidden, embed=args.embed)
    pools = data.load_pools(args.data, music=True)
    man = data.manifest(pools)
    print(json.dumps({k: v for k, v in man.items() if not isinstance(v, list)}), flush=True)
    val_noisy, val_clean = data.validation_set(pools, items=args.val_items, seed=args.val_seed, part=args.val_part)

    model = net.build_model(arch, nnx.Rngs(args.seed))
    start_step, best, history = 0, -1e9, []
    if args.resume and os.path.exists(ckpt):
        saved = weights.load_arrays(ckpt)
        meta = json.loads(open(os.path.splitext(ckpt)[0] + ".json").read())
        model = weights.build(lambda: net.build_model(arch, nnx.Rngs(0)), saved, path=ckpt)
        start_step, history = meta["step"], meta["history"]
        if meta.get("select", "si_sdr") == args.select:
            best = meta["best"] if "best" in meta else meta["best_val_si_sdr_db"]
        print(f"resumed at step {start_step}, best {args.select} {best:.4g}", flush=True)
    if args.init and not (args.resume and os.path.exists(ckpt)):
        model = weights.build(lambda: net.build_model(arch, nnx.Rngs(0)), weights.load_arrays(args.init), path=args.init)
        history = [["init", args.init]]
        print(f"starting from {args.init}", flush=True)
    warm = args.warmup if args.warmup is not None else (200 if start_step else 500)
    total = max(args.steps, start_step + 1)
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, warm, total - start_step, args.lr * 0.05)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    step_fn = make_step(args.sdr_weight, args.stoi_weight)
    rng = np.random.default_rng(args.seed + start_step)
    train_pool = pools["train"]
    n = int(args.seconds * data.SAMPLE_RATE)
    started = time.time()
    step = start_step
    losses = []

    def save_best(val, step, val_stoi=None):
        config = {"architecture": arch.as_dict(), "sample_rate": net.SAMPLE_RATE,
                  "data": {k: v for k, v in man.items()}, "training": {
                      "steps": step, "batch": args.batch, "item_seconds": args.seconds, "lr": args.lr,
                      "loss": f"compressed magnitude MSE + compressed complex MSE + {args.sdr_weight:g} x (-SI-SDR dB)"
                              + (f" + {args.stoi_weight:g} x (1 - band-envelope correlation)" if args.stoi_weight else ""),
                      "history": "see checkpoints/*.json (step, train loss, val SI-SDR)",
                      "augmentation": "see roomtone.enhance.training.data", "distilled": False},
                  "metrics": {"val_si_sdr_db": round(val, 3), "val_noisy_si_sdr_db": round(noisy_sdr, 3),
                              "val_items": args.val_items, "val_seed": args.val_seed, "val_part": args.val_part,
                              "val_snr_db": [0, 15], "selected_by": args.select, "command": " ".join(sys.argv),
                              **({"val_stoi": round(val_stoi, 4)} if val_stoi is not None else {})},
                  "parameters": int(sum(np.asarray(v).size for v in weights.model_arrays(model).values()))}
        weights.save_weights(args.out, weights.model_arrays(model), config)

    def checkpoint():
        weights.save_weights(ckpt, weights.model_arrays(model), {
            "architecture": arch.as_dict(), "sample_rate": net.SAMPLE_RATE, "step": step,
            "best": best, "select": args.select, "history": history})

    from concurrent.futures import ThreadPoolExecutor

    maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixtures")  # next batch beside the step
    upcoming = maker.submit(data.batch, rng, train_pool, pools["rir"], args.batch, n)
    while step < total and time.time() - started < args.minutes * 60:
        noisy, clean = upcoming.result()
        upcoming = maker.submit(data.batch, rng, train_pool, pools["rir"], args.batch, n)
        losses.append(float(step_fn(model, optimizer, noisy, clean)))
        step += 1
        if step % 50 == 0:
            rate = (step - start_step) / (time.time() - started)
            print(f"step {step} loss {np.mean(losses[-50:]):.4f} ({rate:.2f} steps/s)", flush=True)
        if step % args.eval_every == 0:
            val, noisy_sdr, val_stoi = evaluate(model, val_noisy, val_clean, stoi=use_stoi)
            history.append([step, round(float(np.mean(losses[-args.eval_every:])), 5), round(val, 3)]
                           + ([round(val_stoi, 4)] if use_stoi else []))
            print(f"eval step {step}: val SI-SDR {val:.2f} dB (noisy {noisy_sdr:.2f})"
                  + (f", STOI {val_stoi:.4f}" if use_stoi else ""), flush=True)
            score = val_stoi if use_stoi else val
            if score > best:
                best = score
                save_best(val, step, val_stoi)
            checkpoint()
    val, noisy_sdr, val_stoi = evaluate(model, val_noisy, val_clean, stoi=use_stoi)
    history.append([step, round(float(np.mean(losses[-50:])) if losses else 0.0, 5), round(val, 3)]
                   + ([round(val_stoi, 4)] if use_stoi else []))
    score = val_stoi if use_stoi else val
    if score > best:
        best = score
        save_best(val, step, val_stoi)
    checkpoint()
    print(f"done at step {step}: val SI-SDR {val:.2f} dB" + (f", STOI {val_stoi:.4f}" if use_stoi else "")
          + f", best {args.select} {best:.4g}", flush=True)


if __name__ == "__main__":
    main()
