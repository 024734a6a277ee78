"""Train the ``roomtone`` separator (:mod:`roomtone.separate.net`) on mixtures made on the fly
(:mod:`roomtone.separate.training.data`), resumable from its checkpoint.

    python -m roomtone.separate.training.pop909 --out ~/pop909 --songs 300          # render the stems once
    python -m roomtone.separate.training.train --pop909 ~/pop909 --out separate/weights/roomtone.npz --minutes 60
    python -m roomtone.separate.training.train --pop909 ~/pop909 --out ... --resume   # go on from the checkpoint

Loss (per item, on the STFT): the mean absolute difference of the square-root compressed
magnitudes of each stem's estimate (mask x mixture) and its target, over the stems, both channels
and every bin, divided by the mixture's compressed level (so loud and quiet items weigh alike).
A game-music item (partial labels: vocals and accompaniment only) compares the vocals mask's
estimate with the vocals and the other three masks' (one minus the vocals mask) with the
accompaniment. AdamW with warm-up and cosine decay, gradient clipping at 1. The loop
(:mod:`roomtone.models.training.loop`) keeps the checkpoint (``checkpoints/NAME.ckpt.npz`` beside
OUT, no pickle: the parameters, the step, the best validation figure and the history; Adam's
moments are not kept, so a resumed run warms up again) and the shipped weights: the parameters at
the best validation mean SDR (with ``--stems``: the mean over the validation sets, each real
source's held-out songs and the synthetic set, :func:`by_set`), with their
config (:meth:`SeparatorJob.weights_config`, with the lineage of ``--init``'s weights); both
files store the parameters in float16 (:func:`roomtone.models.weights.half_precision`: 2.9 MB
instead of 5.8), loaded back as float32.
"""

import argparse
import json
import os
import sys

import numpy as np

from roomtone.models.training.loop import Evaluation, with_lineage  # noqa: F401  (with_lineage: this job's)
from roomtone.separate import net
from roomtone.separate.training import data

COMPRESS = 0.5


def loss_fn(model, mix, targets, full, dsp=None, fusion=None):
    """The loss of a batch: mix (B, 2, n), targets (B, 4, 2, n), full (B,). With ``dsp`` (the DSP
    masks of the batch, (B, 4, 2, T, F)) and ``fusion`` ``(net_power, dsp_power (4,))``, the loss
    is that of the fused masks (:func:`roomtone.separate.fusion.fuse_masks`, here in JAX): the
    network learns what the DSP masks miss."""
    import jax.numpy as jnp

    from roomtone.models import stft
    from roomtone.separate.fusion import fuse_masks

    w = net.window()
    x = stft.stft(mix, w, net.HOP)  # (B, 2, T, F)
    s = stft.stft(targets, w, net.HOP)  # (B, 4, 2, T, F)
    m = net.masks(model, x)  # (B, 4, 2, T, F)
    if dsp is not None:
        m = fuse_masks(m, dsp, fusion[0], fusion[1], xp=jnp)
    ax = jnp.abs(x)[:, None]
    at = jnp.abs(s)

    def c(z):
        return (z + 1e-8) ** COMPRESS

    scale = jnp.sqrt(jnp.mean(ax ** 2, axis=(1, 2, 3, 4)) + 1e-10) ** COMPRESS  # (B,)
    full_err = jnp.mean(jnp.abs(c(m * ax) - c(at)), axis=(1, 2, 3, 4))
    vocals = jnp.mean(jnp.abs(c(m[:, 0] * ax[:, 0]) - c(at[:, 0])), axis=(1, 2, 3))
    rest = jnp.mean(jnp.abs(c((1.0 - m[:, 0]) * ax[:, 0]) - c(at[:, 3])), axis=(1, 2, 3))
    part_err = 0.5 * (vocals + rest)
    return jnp.mean((full * full_err + (1.0 - full) * part_err) / scale)


def make_step(fusion=None):
    """The compiled training step ``step(model, optimizer, mix, targets, full[, dsp])``; with
    ``fusion`` (net_power, dsp_power) it takes the batch's DSP masks and trains the fused masks."""
    from flax import nnx

    @nnx.jit
    def step(model, optimizer, mix, targets, full, dsp=None):
        loss, grads = nnx.value_and_grad(lambda mdl: loss_fn(mdl, mix, targets, full, dsp, fusion))(model)
        optimizer.update(model, grads)
        return loss

    return step


def fusion_of(f):
    """``(net_power, dsp_power per stem)`` of a weights config's ``fusion`` entry ``f``."""
    return float(f["net_power"]), tuple(float(f["dsp_power"][stem]) for stem in net.STEMS)


def with_dsp_masks(made):
    """A batch ``(mix, targets, full)`` with its DSP masks appended (computed in the data thread)."""
    from roomtone.models import stft
    from roomtone.separate.fusion import dsp_masks

    mix = made[0]
    spec = np.asarray(stft.stft(mix, net.window(), net.HOP))
    return made + (dsp_masks(spec, net.SAMPLE_RATE, net.N_FFT),)


def evaluate(model, mix, targets, full, batch=4, fusion=None):
    """Validation SDR (dB, :func:`roomtone.separate.training.data.sdr_db`): per stem, the mean over the
    full-label items holding it (vocals: over every item with a voice), and ``mean`` of the four.
    Also the mixture's own SDR as each stem (the trivial baseline's figure, for comparison). With
    ``fusion`` (a config's ``fusion`` entry), of the masks fused with the DSP's."""
    import jax

    run = (net.fused_separate_fn(model, mix.shape[-1], fusion) if fusion
           else jax.jit(net.separate_fn(model, mix.shape[-1])))
    outs = np.concatenate([np.asarray(run(mix[i:i + batch])) for i in range(0, len(mix), batch)])
    sdr = data.sdr_db(outs, targets)
    trivial = data.sdr_db(np.repeat(mix[:, None] / 4.0, 4, axis=1), targets)
    result = {}
    for stem, ours, baseline in zip(net.STEMS, data.stem_means(sdr, full), data.stem_means(trivial, full)):
        result[stem], result["trivial_" + stem] = round(ours, 3), round(baseline, 3)
    result["mean"] = round(float(np.nanmean([result[s] for s in net.STEMS])), 3)
    result["trivial_mean"] = round(float(np.nanmean([result["trivial_" + s] for s in net.STEMS])), 3)
    return result


def evaluate_real(model, excerpts, fusion=None):
    """Plain SDR (dB) on real held-out excerpts (:func:`roomtone.separate.training.data.real_excerpts`): per
    stem the mean over each song's excerpts then over songs, ``mean`` of the four, the trivial
    split's, and ``songs`` (each song's per-stem figures)."""
    import jax

    result, per_song = {}, {}
    if not excerpts:
        return result
    n = excerpts[0][1].shape[-1]
    run = net.fused_separate_fn(model, n, fusion) if fusion else jax.jit(net.separate_fn(model, n))
    mix = np.stack([m for _, m, _ in excerpts])
    targets = np.stack([t for _, _, t in excerpts])
    outs = np.concatenate([np.asarray(run(mix[i:i + 4])) for i in range(0, len(mix), 4)])
    ids = [sid for sid, _, _ in excerpts]
    per_song, ours = data.excerpt_table(data.sdr_db(outs, targets), ids)
    _, trivial = data.excerpt_table(data.sdr_db(np.repeat(mix[:, None] / 4.0, 4, axis=1), targets), ids)
    for stem, a, b in zip(net.STEMS, ours, trivial):
        result[stem], result["trivial_" + stem] = round(a, 3), round(b, 3)
    result["mean"] = round(float(np.nanmean(ours)), 3)
    result["trivial_mean"] = round(float(np.nanmean(trivial)), 3)
    result["songs"] = {sid: [round(v, 2) for v in vals] for sid, vals in per_song.items()}
    return result


def licences(sources, render_dirs):
    """The data licences for the weights' config: the game-music packages the mixtures drew from,
    the POP909 renders' soundfonts (each render folder's ``manifest.json``), the voices and RIRs."""
    from roomtone.models.training.datasets import LICENCES

    packages = sorted({name.split("/", 1)[0] for split in ("train", "val") for name, _ in sources[split]["music"]})
    soundfonts = {}
    for folder in render_dirs or []:
        path = os.path.join(folder, "manifest.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
            for name, info in manifest.get("licences", {}).get("soundfonts", {}).items():
                soundfonts[name] = f"{info.get('licence')} ({info.get('package')})"
    return {"game_music": {p: LICENCES.get(p, "unknown") for p in packages},
            "pop909": "POP909 MIDI, MIT (../shared/data/sep/pop909)", "soundfonts": soundfonts,
            "speech": "../shared/data/speech manifest.csv (LibriSpeech CC BY 4.0, VCTK CC BY 4.0, LJ Speech public "
                      "domain, ...)",
            "singing": "vocadito_1 CC BY 4.0",
            "rirs": "../shared/data/speech/more/rir (CC BY, CC BY-SA 3.0, CC0, public domain)",
            "never": "MUSDB18 (../shared/data/sep/eval: evaluation only)"}


def by_set(figures):
    """The mean SDR (dB) of each validation set in :meth:`SeparatorJob.evaluate`'s ``figures``:
    each real source's songs (their ids ``source_name``: per song the mean of its stems, then
    the mean over the source's songs) and the synthetic set's ``mean``. The weights are chosen
    on the mean of these, so that the one held-out song with real sung vocals (the EIR song)
    weighs as much as the eight tracker modules, and the synthetic items with real voices as
    much as either: ``{set: dB}``."""
    sets = {}
    for sid, values in figures.get("songs", {}).items():
        values = [v for v in values if v == v]  # a stem the song lacks is NaN
        if values:
            sets.setdefault(sid.split("_", 1)[0], []).append(float(np.mean(values)))
    out = {name: round(float(np.mean(v)), 3) for name, v in sorted(sets.items())}
    out["synthetic"] = figures["synthetic"]["mean"]
    return out


def selection(figures):
    """``(by_set(figures), the mean over those sets)``: the figure the weights are chosen on."""
    sets = by_set(figures)
    return sets, round(float(np.mean(list(sets.values()))), 3)


def real_songs(songs, per_source):
    """At most ``per_source`` of the held-out real multitrack ``songs`` of each source, in order."""
    return [s for group in data.songs_by_source(songs).values() for s in group[:per_source]]


class SeparatorJob:
    """The separator's part of the loop (:mod:`roomtone.models.training.loop`): mixtures drawn on
    the data thread, the (fused) step, the validation (real held-out excerpts choose the weights
    when there are any; the synthetic set is reported beside them) and the configs of its files."""

    def __init__(self, args, argv, arch, sources, manifest, val, real, *, seed, fusion=None, init_config=None):
        self.args, self.argv, self.arch = args, argv, arch
        self.sources, self.manifest, self.val, self.real = sources, manifest, val, real
        self.fusion, self.init_config = fusion, init_config
        self.items = int(args.seconds * net.SAMPLE_RATE)
        self.rng = np.random.default_rng(seed)  # the data thread's alone
        self.compiled = make_step(fusion_of(fusion) if fusion else None)

    def batch(self):
        made = data.batch(self.rng, self.sources["train"], self.sources["rir"], self.args.batch, self.items)
        return with_dsp_masks(made) if self.fusion else made

    def step(self, model, optimizer, batch):
        return self.compiled(model, optimizer, *batch)

    def evaluate(self, model):
        figures = evaluate(model, *self.val, fusion=self.fusion)
        if self.real:
            figures = {**evaluate_real(model, self.real, fusion=self.fusion), "synthetic": figures}
            figures["by_set"], figures["selection"] = selection(figures)
            return Evaluation(figures["selection"], [figures], json.dumps(figures), figures)
        return Evaluation(figures["mean"], [figures], json.dumps(figures), figures)

    def arrays(self, model):
        from roomtone.models import weights

        return weights.half_precision(weights.model_arrays(model))

    def checkpoint_config(self, model, step, evaluation, history):
        return {"architecture": self.arch.as_dict(), "sample_rate": net.SAMPLE_RATE,
                **({"fusion": self.fusion} if self.fusion else {})}

    def weights_config(self, model, step, evaluation, history):
        from roomtone.models import weights

        args, real, fusion = self.args, self.real, self.fusion
        command = "python -m roomtone.separate.training.train " + " ".join(self.argv)
        chosen_on = ("real held-out multitrack excerpts: " + ", ".join(sorted({sid for sid, _, _ in real}))
                     + f" ({len(real)} excerpts of 8 s) and the synthetic validation set: the mean over the sets "
                     "(each source's songs, the synthetic items; by_set)") if real else "the synthetic validation set"
        config = {"architecture": self.arch.as_dict(), "sample_rate": net.SAMPLE_RATE, "data": self.manifest,
                  "training": {"steps": step, "batch": args.batch, "item_seconds": args.seconds, "lr": args.lr,
                               "loss": "L1 of sqrt-compressed stem magnitudes (mask x mixture) / mixture level; "
                                       "vocals + accompaniment only for game-music items",
                               "augmentation": "see roomtone.separate.training.data",
                               "history": "see checkpoints/*.json", "command": command},
                  "metrics": {"val_sdr_db": evaluation.figures, "val_items": args.val_items, "val_seconds": 6.0,
                              "chosen_on": chosen_on,
                              "note": "plain SDR over each whole item (roomtone.separate.training.data.sdr_db)"
                                      + ("; of the masks fused with the DSP's" if fusion else "")},
                  "parameters": int(sum(np.asarray(v).size for v in weights.model_arrays(model).values()))}
        if fusion:
            config["fusion"] = fusion
            config["training"]["loss"] += "; of the masks fused with the DSP's (roomtone.separate.fusion)"
        if self.init_config is not None:
            config = with_lineage(config, self.init_config, command, step, f"fine-tuned from "
                                  f"{os.path.basename(args.init)}; best validation mean SDR at this step")
        return config


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="weights path (.npz); the checkpoint goes beside it")
    p.add_argument("--pop909", action="append", help="a POP909 render folder (roomtone.separate.training.pop909 "
                                                    "--out); repeatable")
    p.add_argument("--stems", action="append",
                   help="a folder of real multitrack songs staged as arrays (roomtone.separate.training.multitrack, "
                        "roomtone.separate.training.modules); repeatable. Their held-out songs' excerpts select the "
                        "weights")
    p.add_argument("--val-real-songs", type=int, default=8,
                   help="held-out real songs per source whose excerpts select the weights (3 excerpts of 8 s each)")
    p.add_argument("--no-music", action="store_true", help="leave the game music out")
    p.add_argument("--music-cache", default=os.path.join(os.path.expanduser("~"), ".cache", "roomtone",
                                                         "separate_music.npz"),
                   help="where the decoded game-music excerpts are kept between runs")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    p.add_argument("--steps", type=int, default=100000, help="most steps in all")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0, help="training item length")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 300, 100 on resume)")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--val-items", type=int, default=24)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", help="start from these weights (.npz with its config), a fresh schedule")
    p.add_argument("--fused", action="store_true",
                   help="train the masks fused with the DSP's, by the powers in --init's config (fusion); "
                        "validation too")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--head", type=int, default=128)
    return p


def main(argv=None):
    p = parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)

    from flax import nnx

    from roomtone.models import weights
    from roomtone.models.training import loop

    ckpt = loop.checkpoint_path(args.out)
    fusion = None  # checked before the sources load (minutes)
    if args.fused:
        if args.resume and os.path.exists(ckpt):
            fusion = weights.load_config(ckpt).get("fusion")
        elif args.init:
            fusion = weights.load_config(args.init).get("fusion")
        if not fusion:
            p.error("--fused needs --init weights whose config has a fusion entry "
                    "(roomtone.separate.training.fusion --write)")
    arch = net.Architecture(embed=args.embed, hidden=args.hidden, layers=args.layers, head=args.head)
    sources = data.load_sources(args.pop909, music=not args.no_music, music_cache=args.music_cache,
                                stems=args.stems)
    man = data.manifest(sources)
    print(json.dumps({k: v for k, v in man.items() if not isinstance(v, list)}), flush=True)
    val = data.validation_set(sources, items=args.val_items)
    real = data.real_excerpts(real_songs(sources["val"]["multitrack"], args.val_real_songs))

    model, start_step, history, meta = loop.start(lambda: net.build_model(arch, nnx.Rngs(args.seed)),
                                                  out=args.out, resume=args.resume, init=args.init)
    best = meta["best"] if meta else None
    if meta:
        print(f"resumed at step {start_step}, best mean SDR {best:.2f} dB", flush=True)
    man["licences"] = licences(sources, args.pop909)
    man["renders"] = [os.path.abspath(d) for d in args.pop909 or []]
    job = SeparatorJob(args, argv, arch, sources, man, val, real, seed=args.seed + start_step, fusion=fusion,
                       init_config=weights.load_config(args.init) if args.init else None)
    total = max(args.steps, start_step + 1)
    warm = args.warmup if args.warmup is not None else (100 if start_step else 300)
    optimizer = loop.adamw(model, lr=args.lr, warmup=warm, decay_steps=total - start_step, end_lr=args.lr * 0.05,
                           weight_decay=1e-4)
    settings = loop.Loop(out=args.out, steps=total, minutes=args.minutes, eval_every=args.eval_every, log_every=25,
                         evaluate_first=bool(args.init) and not start_step)
    result = loop.train(settings, job, model, optimizer, start_step=start_step, best=best, history=history)
    print(f"done at step {result.step}, best mean SDR {result.best:.2f} dB", flush=True)


if __name__ == "__main__":
    main()
