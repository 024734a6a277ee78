"""The search of the fusion powers (:mod:`roomtone.separate.fusion`) on the held-out synthetic
validation set: a coordinate search over a small grid of the network's power and each stem's DSP
power, keeping a change only when the mean SDR rises.

    python -m roomtone.separate.training.fusion --weights separate/weights/roomtone.npz \\
        --pop909 ~/pop909 --pop909 ~/pop909s            # prints the search; --write stores it

Shapes: masks (batch, stems 4, channels 2, frames, bins) float32.
"""

import argparse
import json
import os
import sys

import numpy as np

from roomtone.separate.fusion import EPS, dsp_masks, fuse_masks

GRID = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5)  # the DSP powers searched
NET_GRID = (0.5, 0.7, 1.0, 1.3)  # the network powers searched


def score(spec, masks, targets, full, inverse, batch=4):
    """Validation SDR of ``masks`` applied to ``spec`` (``inverse(spec, masks)``: the ISTFT of
    :func:`roomtone.separate.net.stages`): per stem as :func:`roomtone.separate.training.train.evaluate`
    averages it (:func:`roomtone.separate.training.data.stem_means`), and the mean. Returns a list of 5."""
    from roomtone.separate.training import data

    outs = np.concatenate([np.asarray(inverse(spec[i:i + batch], masks[i:i + batch]))
                           for i in range(0, len(spec), batch)])
    per = data.stem_means(data.sdr_db(outs, targets), full)
    return per + [float(np.nanmean(per))]


def tune(net_m, dsp_m, evaluate, rounds=2, start=None):
    """Coordinate search of the powers from ``start`` (``(net_power, dsp_power per stem)``;
    default 1 and 0.5 each): ``evaluate(masks) -> [per stem..., mean]``; each round
    tries every grid value of each stem's DSP power, then the network's power, keeping a change
    only when the mean rises by over 0.001 dB. Returns ``(net_power, dsp_power, figures, trail)``,
    the trail every accepted step."""
    stems = net_m.shape[1]
    a, b = (1.0, [0.5] * stems) if start is None else (float(start[0]), [float(v) for v in start[1]])
    best = evaluate(fuse_masks(net_m, dsp_m, a, b))
    trail = [{"net_power": a, "dsp_power": list(b), "val_sdr_db": best}]
    for _ in range(rounds):
        changed = False
        for j in range(stems):
            for g in GRID:
                trial = list(b)
                trial[j] = g
                figures = evaluate(fuse_masks(net_m, dsp_m, a, trial))
                if figures[-1] > best[-1] + 1e-3:
                    best, b, changed = figures, trial, True
                    trail.append({"net_power": a, "dsp_power": list(b), "val_sdr_db": best})
        for g in NET_GRID:
            figures = evaluate(fuse_masks(net_m, dsp_m, g, b))
            if figures[-1] > best[-1] + 1e-3:
                best, a, changed = figures, g, True
                trail.append({"net_power": a, "dsp_power": list(b), "val_sdr_db": best})
        if not changed:
            break
    return a, b, best, trail


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="the separator's weights (.npz with its .json)")
    p.add_argument("--pop909", action="append", help="a POP909 render folder; repeatable (as for training)")
    p.add_argument("--music-cache", default=os.path.join(os.path.expanduser("~"), ".cache", "roomtone",
                                                         "separate_music.npz"))
    p.add_argument("--val-items", type=int, default=24)
    p.add_argument("--write", action="store_true", help="store the powers found in the weights' config")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)

    from roomtone.models import weights
    from roomtone.separate import net
    from roomtone.separate.training import data

    sources = data.load_sources(args.pop909, music_cache=args.music_cache)
    mix, targets, full = data.validation_set(sources, items=args.val_items)
    model, config = net.load_model(args.weights)
    forward, inverse = net.stages(model, mix.shape[-1])
    spec, net_m = (np.concatenate(parts) for parts in zip(*(
        [np.asarray(v) for v in forward(mix[i:i + 4])] for i in range(0, len(mix), 4))))
    dsp_m = dsp_masks(spec, net.SAMPLE_RATE, net.N_FFT)

    def evaluate(m):
        return [round(v, 3) for v in score(spec, m, targets, full, inverse)]

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
              "chosen_on": "the held-out synthetic validation set (roomtone.separate.training.data.validation_set)",
              "command": "python -m roomtone.separate.training.fusion " + " ".join(argv)}
    print(json.dumps(result, indent=1))
    if args.write:
        config["fusion"] = result
        weights.save_config(args.weights, config)


if __name__ == "__main__":
    main()
