"""Train the speaker separator (:mod:`roomtone.separate.speakers_net`) on mixtures of voices made
on the fly from the speech, noise and room-impulse-response pools the denoiser trains on
(``../shared/data/speech``; :mod:`roomtone.enhance.training.data`), resumable.

    python -m roomtone.separate.training.speakers --out separate/weights/speakers.npz --minutes 120
    python -m roomtone.separate.training.speakers --out ... --resume     # go on from the checkpoint

Held out, by speaker id (:func:`roomtone.models.training.datasets.held_out_speaker`): no training
mixture holds a held-out speaker. The held-out speakers are halved
(:func:`roomtone.models.training.speech.held_out_part`): the validation here, which picks the
shipped weights, uses the ``select`` half; ``benchmarks/bench_speakers.py`` uses the ``evaluate``
half and the held-out noises, never seen by the choice.

A training mixture (dynamic mixing, all at 16 kHz): ``sources`` different training speakers, each
a random crop with a random EQ (+-6 dB tilt and bell), levels within +-LEVEL_SPREAD_DB of each other;
65 % of the items fully overlapped, the others as turns (each voice active over a random stretch of
at least 40 % of the item, 20 ms fades: partly overlapped, partly alone, as in a conversation);
reverberation (20 %, a measured RIR per voice; the target keeps the direct path and the first
50 ms); noise (35 %: the denoiser's noise kinds, real scenes, coloured, transients, babble, hum)
at 5-30 dB under the voices; telephone band (10 %: through 8 kHz and back, targets too). Loss:
the utterance-level permutation-invariant negative SI-SDR (dB) of the speakers' outputs, mean
over speakers (Kolbaek et al. 2017; Le Roux et al. 2019). AdamW with warm-up and cosine decay,
gradient clipping at 1 (:mod:`roomtone.models.training.loop`).
"""

import argparse
import itertools
import json
import sys

import numpy as np

from roomtone.models.training import speech as speech_data
from roomtone.models.training.speech import SAMPLE_RATE, crop, eq, noise, reverb, rms
from roomtone.models.training.loop import Evaluation
from roomtone.separate import speakers_net as net

LEVEL_SPREAD_DB = 6.0
# The shares below were 0.5 / 0.3 / 0.6 / 0.15 for the first 2000 steps of the shipped run, which
# learned slowly (val SI-SDRi 0.8 dB at 2000): it went on from that checkpoint with these.
TURN_SHARE = 0.35  # items as turns (else fully overlapped)
REVERB_SHARE = 0.2
NOISE_SHARE = 0.35
PHONE_SHARE = 0.1
NOISE_SNR_DB = (5.0, 30.0)  # voices over the noise


def _by_speaker(items):
    """``{speaker key: [arrays]}`` of a pool's speech list."""
    out = {}
    for key, x in items:
        out.setdefault(key, []).append(x)
    return out


def _turn_gate(rng, n, fade):
    """A 0..1 gate over ``n`` samples open over one random stretch of at least 40 % of them, with
    ``fade``-sample raised-cosine edges."""
    length = int(rng.uniform(0.4, 1.0) * n)
    start = int(rng.integers(0, n - length + 1))
    gate = np.zeros(n, np.float32)
    gate[start:start + length] = 1.0
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade, dtype=np.float32))
    if start > 0:
        gate[start:start + fade] = ramp[:min(fade, length)]
    if start + length < n:
        gate[start + length - fade:start + length] = ramp[::-1][-min(fade, length):]
    return gate


def _telephone(x):
    """Through 8 kHz and back (the band under 4 kHz kept). Shape: (..., n) -> (..., n)."""
    from roomtone.resample import resample

    y = resample(np.atleast_2d(x).astype(np.float32), SAMPLE_RATE, 8000)
    y = resample(y, 8000, SAMPLE_RATE)[..., :x.shape[-1]]
    return np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, x.shape[-1] - y.shape[-1])]).reshape(x.shape)


def mixture(rng, speakers, pool, rirs, n, sources):
    """One training item: (mixture (n,), targets (sources, n)) float32."""
    keys = rng.choice(len(speakers), size=sources, replace=False)
    names = list(speakers)
    turns = rng.random() < TURN_SHARE
    voices, targets = [], []
    for index in keys:
        takes = speakers[names[int(index)]]
        s = eq(rng, crop(rng, takes[int(rng.integers(len(takes)))], n))
        if turns:
            s = s * _turn_gate(rng, n, int(0.02 * SAMPLE_RATE))
        s = s / (rms(s) + 1e-9) * 10.0 ** (rng.uniform(-LEVEL_SPREAD_DB, LEVEL_SPREAD_DB) / 40.0)
        wet = dry = s
        if rirs and rng.random() < REVERB_SHARE:
            wet, dry = reverb(rng, rirs, s)
        voices.append(wet)
        targets.append(dry)
    mix = np.sum(voices, axis=0)
    if rng.random() < NOISE_SHARE:
        bed = noise(rng, pool, pool["speech"], n)
        mix = mix + bed * (rms(mix) / (rms(bed) + 1e-9) * 10.0 ** (-rng.uniform(*NOISE_SNR_DB) / 20.0))
    targets = np.stack(targets)
    if rng.random() < PHONE_SHARE:
        mix, targets = _telephone(mix), _telephone(targets)
    level = 10.0 ** (rng.uniform(-35.0, -15.0) / 20.0) / (rms(mix) + 1e-9)
    peak = np.abs(mix).max() * level
    if peak > 0.99:
        level *= 0.99 / peak
    return (mix * level).astype(np.float32), (targets * level).astype(np.float32)


def validation_set(pools, *, sources=2, items=48, seconds=4.0, seed=4321, part="select"):
    """Fixed mixtures of held-out speakers (``part`` of them: ``select`` for the training's choice,
    ``evaluate`` for the benchmark): ``sources`` different speakers fully overlapped at levels within
    +-5 dB, half of the items in held-out real noise at 10-20 dB under the voices; no other
    augmentation. Returns (mixtures (items, samples), targets (items, sources, samples))."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    speakers = _by_speaker([(k, x) for k, x in pools["val"]["speech"]
                            if speech_data.held_out_part(k, "speech") == part])
    noises = [x for k, x in pools["val"]["noise"] if speech_data.held_out_part(k, "noise") == part]
    names = sorted(speakers)
    mixes, targets = [], []
    for i in range(items):
        chosen = rng.choice(len(names), size=sources, replace=False)
        voices = []
        for index in chosen:
            takes = speakers[names[int(index)]]
            s = crop(rng, takes[int(rng.integers(len(takes)))], n)
            voices.append(s / (rms(s) + 1e-9) * 10.0 ** (rng.uniform(-5.0, 5.0) / 20.0))
        voices = np.stack(voices)
        mix = voices.sum(axis=0)
        if i % 2 and noises:
            bed = crop(rng, noises[int(rng.integers(len(noises)))], n)
            mix = mix + bed * (rms(mix) / (rms(bed) + 1e-9) * 10.0 ** (-rng.uniform(10.0, 20.0) / 20.0))
        level = 0.05 / rms(mix)
        mixes.append((mix * level).astype(np.float32))
        targets.append((voices * level).astype(np.float32))
    return np.stack(mixes), np.stack(targets)


def si_sdr(estimate, reference, eps=1e-8):
    """Scale-invariant SDR in dB (Le Roux et al. 2019), in JAX. Shape: (..., samples) -> (...)."""
    import jax.numpy as jnp

    alpha = jnp.sum(estimate * reference, -1, keepdims=True) / (jnp.sum(reference ** 2, -1, keepdims=True) + eps)
    target = alpha * reference
    return 10.0 * jnp.log10((jnp.sum(target ** 2, -1) + eps) / (jnp.sum((estimate - target) ** 2, -1) + eps))


def pit_si_sdr(estimates, targets):
    """The best mean SI-SDR (dB) over the permutations of the estimates, per item, and the best
    permutation's index. Shape: estimates, targets (batch, sources, samples) -> ((batch,), (batch,))."""
    import jax.numpy as jnp

    sources = targets.shape[1]
    perms = list(itertools.permutations(range(sources)))
    scores = jnp.stack([jnp.mean(si_sdr(estimates[:, list(p)], targets), axis=-1) for p in perms], axis=-1)
    return jnp.max(scores, axis=-1), jnp.argmax(scores, axis=-1)


def loss_fn(model, mix, targets):
    """The batch's mean permutation-invariant negative SI-SDR (dB) of the speakers' outputs."""
    outputs = net.separate_fn(model, mix.shape[-1])(mix)
    best, _ = pit_si_sdr(outputs[:, :targets.shape[1]], targets)
    return -best.mean()


def make_step():
    from flax import nnx

    @nnx.jit
    def step(model, optimizer, mix, targets):
        loss, grads = nnx.value_and_grad(lambda m: loss_fn(m, mix, targets))(model)
        optimizer.update(model, grads)
        return loss

    return step


def evaluate(model, mixes, targets, batch=8):
    """Mean permutation-invariant SI-SDR improvement (dB) over the mixture on the validation set,
    and the mixture's own mean SI-SDR."""
    import jax

    run = jax.jit(net.separate_fn(model, mixes.shape[-1]))
    sources = targets.shape[1]
    outs = np.concatenate([np.asarray(run(mixes[i:i + batch]))[:, :sources] for i in range(0, len(mixes), batch)])
    best, _ = pit_si_sdr(outs, targets)
    base = np.mean(np.asarray(si_sdr(np.repeat(mixes[:, None], sources, 1), targets)), axis=-1)
    return float(np.mean(np.asarray(best) - base)), float(np.mean(base))


class SpeakersJob:
    """The separator's part of the loop: mixtures drawn on the data thread, the step, the
    validation (SI-SDR improvement) and the configs of its files."""

    def __init__(self, args, arch, pools, manifest, val, *, seed):
        self.args, self.arch, self.pools, self.manifest, self.val = args, arch, pools, manifest, val
        self.speakers = _by_speaker(pools["train"]["speech"])
        self.items = int(args.seconds * SAMPLE_RATE)
        self.rng = np.random.default_rng(seed)
        self.compiled = make_step()

    def batch(self):
        pairs = [mixture(self.rng, self.speakers, self.pools["train"], self.pools["rir"], self.items,
                         self.arch.sources) for _ in range(self.args.batch)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def step(self, model, optimizer, batch):
        return self.compiled(model, optimizer, *batch)

    def evaluate(self, model):
        improvement, base = evaluate(model, *self.val)
        return Evaluation(improvement, [round(improvement, 3)],
                          f"val SI-SDRi {improvement:.2f} dB (mixture {base:.2f} dB)", (improvement, base))

    def arrays(self, model):
        from roomtone.models import weights

        return weights.half_precision(weights.model_arrays(model))  # half the shipped file (masks: 0.01 dB)

    def checkpoint_config(self, model, step, evaluation, history):
        return {"architecture": self.arch.as_dict(), "sample_rate": SAMPLE_RATE}

    def weights_config(self, model, step, evaluation, history):
        from roomtone.models import weights

        args = self.args
        improvement, base = evaluation.figures
        return {"architecture": self.arch.as_dict(), "sample_rate": SAMPLE_RATE, "data": dict(self.manifest),
                "training": {"steps": step, "batch": args.batch, "item_seconds": args.seconds, "lr": args.lr,
                             "loss": "utterance-level PIT negative SI-SDR (dB), mean over speakers",
                             "augmentation": {"turns": TURN_SHARE, "reverb": REVERB_SHARE, "noise": NOISE_SHARE,
                                              "noise_snr_db": list(NOISE_SNR_DB), "telephone": PHONE_SHARE,
                                              "level_spread_db": LEVEL_SPREAD_DB,
                                              "before_step_2000": {"turns": 0.5, "reverb": 0.3, "noise": 0.6,
                                                                   "noise_snr_db": [0, 30], "telephone": 0.15}},
                             "history": "see checkpoints/*.json (step, train loss, val SI-SDRi)"},
                "metrics": {"val_si_sdri_db": round(improvement, 3), "val_mixture_si_sdr_db": round(base, 3),
                            "val_items": args.val_items, "val_part": "select", "command": " ".join(sys.argv)},
                "parameters": int(sum(np.asarray(v).size for v in weights.model_arrays(model).values()))}


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="weights path (.npz); the checkpoint goes beside it")
    p.add_argument("--data", default=str(speech_data.DATA), help="the speech pool folder (../shared/data/speech)")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    p.add_argument("--steps", type=int, default=100000, help="most steps in all")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0, help="training item length")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sources", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--val-items", type=int, default=48)
    p.add_argument("--time-steps", type=int, default=0, help="only time this many steps and exit (sizing)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    from flax import nnx

    from roomtone.models.training import loop

    arch = net.Architecture(sources=args.sources, hidden=args.hidden, embed=args.embed, layers=args.layers)
    pools = speech_data.load_pools(args.data, music=True)
    man = speech_data.manifest(pools)
    print(json.dumps({k: v for k, v in man.items() if not isinstance(v, list)}), flush=True)
    val = validation_set(pools, sources=args.sources, items=args.val_items)
    model, start_step, history, meta = loop.start(lambda: net.build_model(arch, nnx.Rngs(args.seed)),
                                                  out=args.out, resume=args.resume)
    best = meta.get("best") if meta else None
    if meta:
        print(f"resumed at step {start_step}, best {best}", flush=True)
    total = max(args.steps, start_step + 1)
    optimizer = loop.adamw(model, lr=args.lr, warmup=200 if start_step else 500, decay_steps=total - start_step,
                           end_lr=args.lr * 0.05, weight_decay=1e-4)
    job = SpeakersJob(args, arch, pools, man, val, seed=args.seed + start_step)
    if args.time_steps:
        import time

        b = job.batch()
        job.step(model, optimizer, b)
        clock = time.perf_counter()
        for _ in range(args.time_steps):
            b = job.batch()
            loss = float(job.step(model, optimizer, b))
        print(f"loss {loss:.2f}; ", end="")
        print(f"{(time.perf_counter() - clock) / args.time_steps:.3f} s/step", flush=True)
        return
    settings = loop.Loop(out=args.out, steps=total, minutes=args.minutes, eval_every=args.eval_every, log_every=50)
    result = loop.train(settings, job, model, optimizer, start_step=start_step, best=best, history=history)
    print(f"done at step {result.step}: best val SI-SDRi {result.best:.2f} dB", flush=True)


if __name__ == "__main__":
    main()
