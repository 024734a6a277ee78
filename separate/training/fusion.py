"""The search of the fusion powers (:mod:`roomtone.separate.fusion`) on the held-out validation
sets: a coordinate search over a small grid of the network's power and each stem's DSP power,
keeping a change only when the mean SDR rises. With ``--stems`` (the staged real multitrack
folders, as for training) the figure searched is the training's selection figure: the mean over
the sets (each real source's held-out songs, 3 excerpts of 8 s each, and the synthetic set;
:func:`roomtone.separate.training.train.by_set`); without, the synthetic set's mean.

    python -m roomtone.separate.training.fusion --weights separate/weights/roomtone.npz \\
        --pop909 ~/pop909 --pop909 ~/pop909s            # prints the search; --write stores it
    python -m roomtone.separate.training.fusion --weights W.npz --pop909 ~/pop909 --pop909 ~/pop909s \\
        --stems ~/.cache/roomtone/stems/eir --stems ~/.cache/roomtone/stems/modules

Shapes: masks (batch, stems 4, channels 2, frames, bins) float32.
"""

import argparse
import json
import os
import sys

import numpy as np

from roomtone.separate.fusion import EPS, dsp_masks, fuse_masks
from roomtone.separate.net import N_FFT, SAMPLE_RATE

GRID = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5)  # the DSP powers searched
NET_GRID = (0.5, 0.7, 1.0, 1.3)  # the network powers searched


def score(spec, masks, targets, full, inverse, batch=4):
    """Validation SDR of ``masks`` applied to ``spec`` (``inverse(spec, masks)``: the ISTFT of
    :func:`roomtone.separate.net.stages`): per stem as :func:`roomtone.separate.training.train.evaluate`
    averages it (:func:`roomtone.separate.training.data.stem_means`), and the mean. Returns a list of 5."""
    from roomtone.separate.training import data

    per = data.stem_means(data.sdr_db(_outputs(spec, masks, inverse, batch), targets), full)
    return per + [float(np.nanmean(per))]


def _outputs(spec, masks, inverse, batch=4):
    """The stems of ``masks`` applied to ``spec`` (``inverse``), ``batch`` items at a time."""
    return np.concatenate([np.asarray(inverse(spec[i:i + batch], masks[i:i + batch]))
                           for i in range(0, len(spec), batch)])


def fused(net_m, dsp_m, a, b):
    """:func:`~roomtone.separate.fusion.fuse_masks` of one set's masks, or of each set's where
    ``net_m`` and ``dsp_m`` are lists (sets of other lengths)."""
    if isinstance(net_m, (list, tuple)):
        return [fuse_masks(n, d, a, b) for n, d in zip(net_m, dsp_m)]
    return fuse_masks(net_m, dsp_m, a, b)


def tune(net_m, dsp_m, evaluate, rounds=2, start=None):
    """Coordinate search of the powers from ``start`` (``(net_power, dsp_power per stem)``;
    default 1 and 0.5 each): ``evaluate(masks) -> [per stem..., figure searched]`` (``masks``
    a list where ``net_m`` and ``dsp_m`` are lists, :func:`fused`); each round
    tries every grid value of each stem's DSP power, then the network's power, keeping a change
    only when the mean rises by over 0.001 dB. Returns ``(net_power, dsp_power, figures, trail)``,
    the trail every accepted step."""
    stems = (net_m[0] if isinstance(net_m, (list, tuple)) else net_m).shape[1]
    a, b = (1.0, [0.5] * stems) if start is None else (float(start[0]), [float(v) for v in start[1]])
    best = evaluate(fused(net_m, dsp_m, a, b))
    trail = [{"net_power": a, "dsp_power": list(b), "val_sdr_db": best}]
    for _ in range(rounds):
        changed = False
        for j in range(stems):
            for g in GRID:
                trial = list(b)
                trial[j] = g
                figures = evaluate(fused(net_m, dsp_m, a, trial))
                if figures[-1] > best[-1] + 1e-3:
                    best, b, changed = figures, trial, True
                    trail.append({"net_power": a, "dsp_power": list(b), "val_sdr_db": best})
        for g in NET_GRID:
            figures = evaluate(fused(net_m, dsp_m, g, b))
            if figures[-1] > best[-1] + 1e-3:
                best, a, changed = figures, g, True
                trail.append({"net_power": a, "dsp_power": list(b), "val_sdr_db": best})
        if not changed:
            break
    return a, b, best, trail


def _masks(forward, mix, batch=4):
    """The mixture STFT, the network's masks and the DSP's of ``mix`` (items, 2, n)."""
    spec, net_m = (np.concatenate(parts) for parts in zip(*(
        [np.asarray(v) for v in forward(mix[i:i + batch])] for i in range(0, len(mix), batch))))
    return spec, net_m, dsp_masks(spec, SAMPLE_RATE, N_FFT)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="the separator's weights (.npz with its .json)")
    p.add_argument("--pop909", action="append", help="a POP909 render folder; repeatable (as for training)")
    p.add_argument("--music-cache", default=os.path.join(os.path.expanduser("~"), ".cache", "roomtone",
                                                         "separate_music.npz"))
    p.add_argument("--val-items", type=int, default=24)
    p.add_argument("--stems", action="append", help="a staged real multitrack folder (as for training); "
                   "repeatable: its held-out songs join the search, the mean over the sets is searched")
    p.add_argument("--val-real-songs", type=int, default=8, help="held-out real songs per source (as for training)")
    p.add_argument("--write", action="store_true", help="store the powers found in the weights' config")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)

    from roomtone.models import weights
    from roomtone.separate import net
    from roomtone.separate.training import data

    # the validation split alone, and of the real sources only the songs the search reads
    sources = data.load_sources(args.pop909, music=True, music_cache=args.music_cache, stems=args.stems,
                                splits=("val",), per_source=args.val_real_songs)
    mix, targets, full = data.validation_set(sources, items=args.val_items)
    model, config = net.load_model(args.weights)
    forward, inverse = net.stages(model, mix.shape[-1])
    spec, net_m, dsp_m = _masks(forward, mix)
    real = []
    if args.stems:
        from roomtone.separate.training.train import real_songs

        real = data.real_excerpts(real_songs(sources["val"]["multitrack"], args.val_real_songs))
    if not real:
        def evaluate(m):
            return [round(v, 3) for v in score(spec, m, targets, full, inverse)]
    else:
        from roomtone.separate.training.train import selection

        r_mix = np.stack([m for _, m, _ in real])
        r_targets = np.stack([t for _, _, t in real])
        r_ids = [sid for sid, _, _ in real]
        r_forward, r_inverse = net.stages(model, r_mix.shape[-1])
        r_spec, r_net, r_dsp = _masks(r_forward, r_mix)
        net_m, dsp_m = [net_m, r_net], [dsp_m, r_dsp]

        def evaluate(masks):
            synthetic = score(spec, masks[0], targets, full, inverse)
            outs = _outputs(r_spec, masks[1], r_inverse)
            per_song, per_stem = data.excerpt_table(data.sdr_db(outs, r_targets), r_ids)
            _, figure = selection({"songs": per_song, "synthetic": {"mean": synthetic[-1]}})
            return [round(float(v), 3) for v in per_stem] + [figure]

    alone = evaluate(net_m)
    dsp_alone = evaluate(dsp_m)
    before = config.get("fusion")  # weights trained fused: search from the powers they were trained with
    start = (before["net_power"], [before["dsp_power"][stem] for stem in net.STEMS]) if before else None
    a, b, best, trail = tune(net_m, dsp_m, evaluate, start=start)
    names = list(net.STEMS) + ["mean"]
    result = {"net_power": a, "dsp_power": dict(zip(net.STEMS, b)), "eps": EPS,
              "val_sdr_db": dict(zip(names, best)), "network_alone_val_sdr_db": dict(zip(names, alone)),
              "dsp_alone_val_sdr_db": dict(zip(names, dsp_alone)), "val_items": args.val_items,
              "search": {"dsp_grid": list(GRID), "net_grid": list(NET_GRID), "trail": trail},
              "chosen_on": ("the mean over the validation sets (by_set): the held-out synthetic set and the real "
                            "held-out songs " + ", ".join(sorted(set(r_ids))) + f" ({len(real)} excerpts of 8 s); "
                            "figures per stem: the real excerpts'") if real else
                           "the held-out synthetic validation set (roomtone.separate.training.data.validation_set)",
              "command": "python -m roomtone.separate.training.fusion " + " ".join(argv)}
    print(json.dumps(result, indent=1))
    if args.write:
        config["fusion"] = result
        weights.save_config(args.weights, config)


if __name__ == "__main__":
    main()
