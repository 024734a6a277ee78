"""Train the mastering assistant (:mod:`roomtone.mastering.assistant`) self-supervised on real
music, resumable from its checkpoint.

    python -m roomtone.mastering.training.train_assistant --out mastering/weights/assistant.npz
    python -m roomtone.mastering.training.train_assistant --out ... --resume
    python -m roomtone.mastering.training.train_assistant --out mastering/weights/assistant.npz --calibrate-only

Data: the OGG/FLAC files of Debian's free game-music packages found on this machine (``--music``
folders; default: ``wesnoth-1.16-music`` GPL-2, ``singularity-music`` CC BY-SA 3.0,
``hyperrogue-music`` GPL-2+; licences read from ``/usr/share/doc/<package>/copyright`` and
recorded in the manifest), decoded, resampled to 44.1 kHz, cut into up to ``--excerpts`` 20 s
excerpts per file, and kept as their Welch power spectra (total, mid, side) on the fitter's
analysis bins (cached in ``--cache``). Files whose name's CRC-32 is 0 mod 5 are held out for
validation; ``../shared/data/music`` is never read here (the benchmark's clips).

Each step draws a batch of excerpts and de-masters each (:func:`degrade`): an EQ curve (tilt
+-2 dB/octave, one to three bumps of +-7 dB, 0.3-1.5 octaves wide, low and high shelves +-6 dB)
and a width change (x0.4 .. x1.6 on the side), both scaled by a strength uniform in 0..1 (mild
and untouched mixes as common as bad ones), a tenth near mono and, for a fifth of the batches, a
mono downmix; all exact in the power spectrum. The network sees the degraded features and is
trained on the fitter's loss (:func:`roomtone.mastering.fit._loss`, the JAX chain's EQ response on
the bins) towards the original's features. Adam 2e-3, cosine decay, gradient clipping at 1, in
the shared loop (:mod:`roomtone.models.training.loop`: checkpoint beside ``--out``, the shipped
weights at the best held-out stereo tonal distance).

Validation (fixed degradations of the held-out excerpts): the loudness-normalised 1/3-octave
distance (dB RMS, 27 bands) to the original, before and after the predicted chain (under the
fitter's linear model), and the parameter error: the predicted EQ's curve against the inverse of
the degradation's, both less their K-weighted mean, dB RMS over the bands.

Calibration (:func:`calibrate`): the music of ``--calibrate-on`` packages (default the Nexuiz
soundtrack, ``nexuiz-music``, GPL-2+, whose OGG files ship inside ``music.pk3`` and are extracted
into ``~/.cache/roomtone/music``) is kept out of training and validation. After training (or with
``--calibrate-only`` for existing weights) the EQ strength best on it is written to the config's
``calibration`` with the figures at every strength; :func:`roomtone.mastering.assistant.propose`
applies it.
"""

import argparse
import json
import os

import numpy as np

from roomtone.mastering import assistant
from roomtone.models.training.datasets import LICENCES, held_out, music_files, music_folders
from roomtone.models.training.loop import Evaluation

RATE = 44100
EXCERPT_S = 20.0


def build_cache(files, excerpts, cache, key=""):
    """Spectra of every excerpt: arrays ``p_total``, ``p_mid``, ``p_side`` (items, bins), ``val``
    (items,) bool, ``file_index`` (items,) index into ``names``. Written to ``cache`` (npz)."""
    import soundfile as sf

    from roomtone.resample import resample

    a = assistant.analysis(RATE)
    rows = {"p_total": [], "p_mid": [], "p_side": [], "val": [], "file_index": []}
    names = []
    length = int(EXCERPT_S * RATE)
    for index, (package, path) in enumerate(files):
        try:
            x, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # a file libsndfile cannot read: skip it, say so
            print(f"skip {path}: {exc}", flush=True)
            continue
        x = x.T
        if x.shape[0] == 1:
            x = np.concatenate([x, x])
        x = x[:2]
        if rate != RATE:
            x = resample(np.ascontiguousarray(x), rate, RATE)
        if x.shape[1] < 5 * RATE or not np.any(x):
            continue
        count = max(1, min(excerpts, x.shape[1] // length))
        starts = np.linspace(0, max(0, x.shape[1] - length), count + 2)[1:-1] if count > 1 else [max(0, (x.shape[1] - length) // 2)]
        names.append(f"{package}:{path.name}")
        for s in starts:
            piece = np.ascontiguousarray(x[:, int(s):int(s) + length])
            if np.sqrt(np.mean(piece ** 2)) < 1e-3:  # a silent gap
                continue
            total, mid, side = a.spectra(piece)
            rows["p_total"].append(total)
            rows["p_mid"].append(mid)
            rows["p_side"].append(side)
            rows["val"].append(held_out(path.name))
            rows["file_index"].append(len(names) - 1)
        print(f"{index + 1}/{len(files)} {path.name}", flush=True)
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    arrays["names"] = np.asarray(names)
    temp = cache + ".tmp.npz"
    np.savez(temp, key=np.asarray(key), **arrays)
    os.replace(temp, cache)
    return arrays


def degrade(rng, freqs, items):
    """Random de-mastering of ``items`` excerpts: (eq_db (items, bins), width (items,)). See the
    module docstring."""
    octaves = np.log2(freqs / 1000.0)[None, :]
    g = rng.uniform(-2.0, 2.0, (items, 1)) * octaves
    for _ in range(3):
        on = rng.random((items, 1)) < 0.7
        centre = np.log2(rng.uniform(40.0, 14000.0, (items, 1)) / 1000.0)
        width = rng.uniform(0.3, 1.5, (items, 1))
        g = g + on * rng.uniform(-7.0, 7.0, (items, 1)) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    low = np.log2(rng.uniform(60.0, 250.0, (items, 1)) / 1000.0)
    high = np.log2(rng.uniform(4000.0, 12000.0, (items, 1)) / 1000.0)
    g = g + rng.uniform(-6.0, 6.0, (items, 1)) / (1.0 + np.exp((octaves - low) * 6.0))
    g = g + rng.uniform(-6.0, 6.0, (items, 1)) / (1.0 + np.exp(-(octaves - high) * 6.0))
    # how hard each item is de-mastered: uniform 0..1, so mild and untouched mixes are as common as
    # bad ones and the assistant learns to leave a balanced mix alone
    strength = rng.uniform(0.0, 1.0, (items, 1))
    g = np.clip(g * strength, -15.0, 15.0)
    w = np.exp(rng.uniform(np.log(0.4), np.log(1.6), items) * strength[:, 0])
    near_mono = rng.random(items) < 0.1
    w[near_mono] = rng.uniform(0.05, 0.3, near_mono.sum())
    return g.astype(np.float32), w.astype(np.float32)


def make_batch(rng, data, index, a, stereo):
    """(features (batch, 32), items dict for the loss, eq_db, width) for excerpts ``index``."""
    g, w = degrade(rng, a.freqs, len(index))
    G = 10.0 ** (g / 10.0)
    mid0, side0 = data["p_mid"][index], data["p_side"][index]
    if stereo:
        mid, side = G * mid0, G * side0 * (w[:, None] ** 2)
        total = 2.0 * (mid + side)
        x = a.features(total, mid, side)
        target = a.features(2.0 * (mid0 + side0), mid0, side0)
    else:  # a mono downmix (L+R)/2: the mid
        total, mid, side = G * mid0, None, None
        x = a.features(total)
        target = a.features(mid0)
    items = {"p_total": total.astype(np.float32),
             "p_mid": (mid if stereo else total).astype(np.float32),
             "p_side": (side if stereo else np.zeros_like(total)).astype(np.float32),
             "target_tonal": target[:, :27], "target_width": target[:, 27:31]}
    return x, items, g, w


def _eq_curve_db(a, raw):
    """The predicted EQ's power response in dB on the 27 bands (mean over each band's bins).
    Shape: raw (items, 12) -> (items, 27)."""
    import jax.numpy as jnp

    from roomtone.mastering import fit

    shared = assistant.loss_data(a, True)
    bands = np.asarray(a.bands, np.float64)
    return np.asarray([10.0 * np.log10((bands @ np.asarray(fit.eq_power(jnp.asarray(u), shared, a.sample_rate)[1],
                                                             np.float64)) / bands.sum(1))
                       for u in np.asarray(raw, np.float32)[:, :assistant.N_GAINS]])


def evaluate(model, data, val_index, a, scale, seed=7):
    """Validation figures (module docstring) on fixed degradations, stereo and mono."""
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    figures = {}
    for stereo in (True, False):
        x, items, g, w = make_batch(rng, data, val_index, a, stereo)
        raw = np.asarray(model(jnp.asarray((x - scale["mean"]) / scale["std"])))
        before = np.sqrt(np.mean((x[:, :27] - items["target_tonal"]) ** 2, axis=1))
        after = []
        for i in range(len(val_index)):
            spectra = (items["p_total"][i], items["p_mid"][i] if stereo else None, items["p_side"][i] if stereo else None)
            curve = assistant._model_tonal(a, raw[i], spectra, stereo)
            after.append(np.sqrt(np.mean((curve - items["target_tonal"][i]) ** 2)))
        predicted = _eq_curve_db(a, raw)
        inverse = -(g @ a.bands.T) / a.bands.sum(1)
        k = a.k2 / a.k2.sum()
        err = (predicted - predicted @ k[:, None]) - (inverse - inverse @ k[:, None])
        key = "stereo" if stereo else "mono"
        figures[f"{key}_tonal_before_db"] = round(float(np.mean(before)), 3)
        figures[f"{key}_tonal_after_db"] = round(float(np.mean(after)), 3)
        figures[f"{key}_eq_error_db"] = round(float(np.mean(np.sqrt(np.mean(err ** 2, axis=1)))), 3)
        if stereo:
            from roomtone.mastering import fit

            width = fit.WIDTH_LIMIT / (1.0 + np.exp(-raw[:, assistant.N_GAINS]))
            figures["width_error"] = round(float(np.mean(np.abs(width - np.minimum(1.0 / w, fit.WIDTH_LIMIT)))), 3)
    return figures


STRENGTHS = np.round(np.arange(0.0, 1.0001, 0.05), 2)


def calibrate(forward, data, index, a, scale, seed=11):
    """The EQ strength that serves music the network never trained on best: for each strength in
    :data:`STRENGTHS` (the predicted gains in dB times it, :func:`assistant.scale_proposal`), the
    mean loudness-normalised 1/3-octave distance to the original after the predicted chain (the
    fitter's linear model) over fixed degradations (:func:`degrade`, seed ``seed``) of the
    excerpts ``index``, stereo and mono. ``forward``: standardised features (n, 32) -> raw (n, 12).
    Returns ``(best strength, {strength: distance dB}, distance of the untouched input)``.

    Why: the long-term spectrum alone hardly tells a fault from the music (a Gaussian prior fitted
    to the training excerpts' curves gives a posterior-mean correction that recovers only a few
    percent of a random EQ on other music), so a network fitted to a few hundred excerpts of one
    kind of music proposes too much for another kind. Shrinking its proposal by the strength that
    is best on a collection it never saw is the calibration that carries over."""
    rng = np.random.default_rng(seed)
    totals = {float(s): [] for s in STRENGTHS}
    before = []
    for stereo in (True, False):
        x, items, _, _ = make_batch(rng, data, index, a, stereo)
        raw = np.asarray(forward((x - scale["mean"]) / scale["std"]), np.float32)
        before.extend(np.sqrt(np.mean((x[:, :27] - items["target_tonal"]) ** 2, axis=1)))
        for strength in totals:
            scaled = assistant.scale_proposal(raw, strength, 1.0)
            for i in range(len(index)):
                spectra = (items["p_total"][i], items["p_mid"][i] if stereo else None,
                           items["p_side"][i] if stereo else None)
                curve = assistant._model_tonal(a, scaled[i], spectra, stereo)
                totals[strength].append(float(np.sqrt(np.mean((curve - items["target_tonal"][i]) ** 2))))
    figures = {strength: round(float(np.mean(v)), 3) for strength, v in totals.items()}
    best = min(figures, key=lambda k: (figures[k], k))
    return best, figures, round(float(np.mean(before)), 3)


def package_of(data, i):
    return str(data["names"][data["file_index"][i]]).split(":", 1)[0]


def make_step(a, shared_stereo, shared_mono):
    from flax import nnx

    def loss(model, x, items, stereo):
        shared = shared_stereo if stereo else shared_mono
        return assistant.batched_loss(model(x), shared, items, a.sample_rate, stereo)

    @nnx.jit(static_argnames=("stereo",))
    def step(model, optimizer, x, items, stereo):
        value, grads = nnx.value_and_grad(lambda m: loss(m, x, items, stereo))(model)
        optimizer.update(model, grads)
        return value

    return step


def load_music(args):
    """The excerpts' spectra (:func:`build_cache`), from ``--cache`` when it holds this file list and
    excerpt count. Returns ``(data, folders)``."""
    folders = music_folders()
    files = music_files(folders)
    key = f"{args.excerpts}:" + "|".join(f"{package}/{path.name}" for package, path in files)
    if os.path.exists(args.cache):
        with np.load(args.cache, allow_pickle=False) as saved:
            data = dict(saved)
        if str(data.pop("key", "")) == key:
            return data, folders
    if not files:  # none cached for this list, and none to build from
        raise SystemExit("no music found: install wesnoth-1.16-music, singularity-music, hyperrogue-music")
    os.makedirs(os.path.dirname(args.cache), exist_ok=True)
    return build_cache(files, args.excerpts, args.cache, key), folders


def calibration(forward, data, index, a, scale, packages, folders):
    """The config's ``calibration`` entry: :func:`calibrate` on the excerpts ``index`` of the
    calibration ``packages``, with the files and licences it used."""
    if not len(index):
        raise SystemExit(f"no music of {', '.join(packages)} on this machine to calibrate on")
    best, figures, before = calibrate(forward, data, index, a, scale)
    print(f"calibration: strength {best} ({figures[best]} dB; full strength {figures[1.0]} dB, input {before} dB)",
          flush=True)
    names = sorted({str(data["names"][data["file_index"][i]]) for i in index})
    return {"tonal_strength": best, "tonal_after_db": {f"{k:.2f}": v for k, v in figures.items()},
            "tonal_before_db": before, "excerpts": int(len(index)), "files": names,
            "packages": {k: {"folder": folders.get(k), "licence": LICENCES.get(k)} for k in packages},
            "method": "roomtone.mastering.training.train_assistant.calibrate (degradations seed 11, stereo and mono)"}


def calibrate_weights(path, data, index, a, packages, folders):
    """Write the ``calibration`` of the weights at ``path`` (their own feature scale) into their config."""
    import jax.numpy as jnp

    from roomtone.models import weights

    model, config = assistant.load_model(path)
    scale = {k: np.asarray(v, np.float32) for k, v in config["features"].items()}
    config["calibration"] = calibration(lambda z: model(jnp.asarray(z)), data, index, a, scale, packages, folders)
    weights.save_weights(path, weights.model_arrays(model), config)


class AssistantJob:
    """The assistant's part of the loop (:mod:`roomtone.models.training.loop`): de-mastered
    batches (a fifth mono) with input noise drawn on the data thread, the step, the held-out
    figures (the stereo tonal distance after the chain selects, lower is better) and the config its
    files share."""

    def __init__(self, args, arch, data, folders, train_index, val_index, calibration_packages, scale, rng):
        self.args, self.arch, self.data, self.folders = args, arch, data, folders
        self.train_index, self.val_index, self.calibration_packages = train_index, val_index, calibration_packages
        self.scale, self.rng = scale, rng  # rng: the data thread's alone from here on
        self.a = assistant.analysis(RATE)
        self.compiled = make_step(self.a, assistant.loss_data(self.a, True), assistant.loss_data(self.a, False))

    def batch(self):
        rng = self.rng
        stereo = rng.random() >= 0.2
        x, items, _, _ = make_batch(rng, self.data, rng.choice(self.train_index, self.args.batch), self.a, stereo)
        z = (x - self.scale["mean"]) / self.scale["std"]
        z = z + self.args.input_noise * rng.standard_normal(z.shape).astype(np.float32)
        return z, items, stereo

    def step(self, model, optimizer, batch):
        import jax.numpy as jnp

        z, items, stereo = batch
        return self.compiled(model, optimizer, jnp.asarray(z), {k: jnp.asarray(v) for k, v in items.items()},
                             stereo=stereo)

    def evaluate(self, model):
        figures = evaluate(model, self.data, self.val_index, self.a, self.scale)
        return Evaluation(figures["stereo_tonal_after_db"], [figures], json.dumps(figures), figures)

    def arrays(self, model):
        from roomtone.models import weights

        return weights.model_arrays(model)

    def weights_config(self, model, step, evaluation, history):
        from roomtone.models import weights

        args, data, val_index = self.args, self.data, self.val_index
        return {"architecture": self.arch.as_dict(), "sample_rate": RATE, "step": step, "history": history,
                "features": {k: [float(v) for v in self.scale[k]] for k in ("mean", "std")},
                "data": {"packages": {k: {"folder": v, "licence": LICENCES[k]}
                                      for k, v in self.folders.items() if k not in self.calibration_packages},
                         "files": int(len(data["names"])), "train_excerpts": int(len(self.train_index)),
                         "val_excerpts": int(len(val_index)), "excerpt_s": EXCERPT_S,
                         "held_out": "file name CRC-32 = 0 mod 5",
                         "val_files": sorted({str(data["names"][i]) for i in data["file_index"][val_index]})},
                "training": {"steps": step, "batch": args.batch, "lr": args.lr,
                             "optimizer": f"adamw (weight decay {args.weight_decay:g}), cosine, clip 1",
                             "input_noise": args.input_noise, "selection": "best held-out stereo tonal distance",
                             "loss": "roomtone.mastering.fit.loss (tonal MSE + level change + width + gain penalty)",
                             "degradations": "see roomtone.mastering.training.train_assistant.degrade",
                             "mono_batches": 0.2},
                "metrics": evaluation.figures,
                "parameters": int(sum(v.size for v in weights.model_arrays(model).values()))}

    checkpoint_config = weights_config  # the checkpoint carries the same config (its feature scale resumes)


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="weights to write (.npz, with .json beside it)")
    p.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "roomtone", "assistant_spectra.npz"))
    p.add_argument("--excerpts", type=int, default=6, help="excerpts per file")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--input-noise", type=float, default=0.2, help="std of Gaussian noise on the standardised features")
    p.add_argument("--calibrate-on", action="append", metavar="PACKAGE",
                   help="a music package kept out of training and validation and used only to calibrate the "
                        "EQ strength (train_assistant.calibrate; repeatable; default: nexuiz-music)")
    p.add_argument("--calibrate-only", action="store_true",
                   help="calibrate the existing --out weights (trained without the calibration packages) and "
                        "rewrite their config; no training")
    p.add_argument("--resume", action="store_true")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    packages = args.calibrate_on or ["nexuiz-music"]

    from flax import nnx

    from roomtone.models import weights
    from roomtone.models.training import loop

    data, folders = load_music(args)
    a = assistant.analysis(RATE)
    calibrating = np.isin([package_of(data, i) for i in range(len(data["val"]))], packages)
    val_index = np.flatnonzero(data["val"] & ~calibrating)
    train_index = np.flatnonzero(~data["val"] & ~calibrating)
    calibration_index = np.flatnonzero(calibrating)
    print(f"{len(train_index)} training excerpts, {len(val_index)} held out, {len(calibration_index)} for calibration, "
          f"from {len(data['names'])} files", flush=True)
    if args.calibrate_only:
        trained = set(weights.load_config(args.out)["data"]["packages"])
        if trained & set(packages):
            raise SystemExit(f"{args.out} was trained on {sorted(trained & set(packages))}: "
                             "calibrate on music it never saw")
        calibrate_weights(args.out, data, calibration_index, a, packages, folders)
        return

    rng = np.random.default_rng(args.seed)
    x, _, _, _ = make_batch(rng, data, rng.choice(train_index, 2048), a, True)
    xm, _, _, _ = make_batch(rng, data, rng.choice(train_index, 512), a, False)
    allx = np.concatenate([x, xm])
    scale = {"mean": allx.mean(0).astype(np.float32), "std": np.maximum(allx.std(0), 0.1).astype(np.float32)}
    scale["std"][-1] = 1.0
    arch = assistant.Architecture(hidden=args.hidden)
    model, start, history, meta = loop.start(lambda: assistant.build_model(arch, nnx.Rngs(args.seed)),
                                             out=args.out, resume=args.resume)
    if meta:
        scale = {k: np.asarray(v, np.float32) for k, v in meta["features"].items()}
        print(f"resumed at step {start}", flush=True)
    optimizer = loop.adamw(model, lr=args.lr, warmup=min(200, args.steps // 10 + 1), decay_steps=args.steps - start,
                           end_lr=args.lr * 0.02, weight_decay=args.weight_decay)
    job = AssistantJob(args, arch, data, folders, train_index, val_index, packages, scale, rng)
    best = min([h[2]["stereo_tonal_after_db"] for h in history if isinstance(h[2], dict)], default=None)
    settings = loop.Loop(out=args.out, steps=args.steps, eval_every=args.eval_every, log_every=100, maximise=False)
    result = loop.train(settings, job, model, optimizer, start_step=start, best=best, history=history)
    print(f"done at step {result.step}: best held-out stereo tonal distance {result.best:.3f} dB", flush=True)
    if len(calibration_index):  # the shipped weights' EQ strength, from music they never saw
        calibrate_weights(args.out, data, calibration_index, a, packages, folders)


if __name__ == "__main__":
    main()
