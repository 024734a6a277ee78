"""``--explain``: the decisions of a master in plain words with numbers, generated from the
parameters actually applied (the preset as rendered, fitted or not) and the stage readings of the
report. numpy only (no JAX)."""


def _hz(freq):
    return f"{freq / 1000:g} kHz" if freq >= 1000 else f"{freq:g} Hz"


def _band_label(crossovers, index):
    if not crossovers:
        return "on the full band"
    if index == 0:
        return f"below {_hz(crossovers[0])}"
    if index == len(crossovers):
        return f"above {_hz(crossovers[-1])}"
    return f"on {_hz(crossovers[index - 1])}-{_hz(crossovers[index])}"


def processor_lines(processor, reduction_db=None):
    """Plain-words lines for one processor of the chain (``reduction_db``: the multiband
    compressor's mean reduction per band, dB, when measured)."""
    kind = processor.kind
    if kind == "eq":
        lines = []
        if processor.low_shelf_db:
            lines.append(f"low shelf {processor.low_shelf_db:+.1f} dB at {_hz(processor.low_shelf_hz)}")
        if processor.high_shelf_db:
            lines.append(f"high shelf {processor.high_shelf_db:+.1f} dB at {_hz(processor.high_shelf_hz)}")
        for freq, gain, q in processor.bands:
            if gain:
                lines.append(f"bell {gain:+.1f} dB at {_hz(freq)} (Q {q:g})")
        return lines or ["EQ flat (no shelf or bell)"]
    if kind == "multiband":
        lines = []
        for b, (threshold, ratio, makeup) in enumerate(zip(processor.threshold_db, processor.ratio, processor.makeup_db)):
            text = f"{ratio:g}:1 {_band_label(processor.crossovers_hz, b)} above {threshold:g} dBFS"
            if reduction_db is not None:
                text += f", {reduction_db[b]:.1f} dB average reduction"
            if makeup:
                text += f", makeup {makeup:+.1f} dB"
            lines.append(text)
        lines.append(f"compressor attack {processor.attack_ms:g} ms, release {processor.release_ms:g} ms, "
                     f"knee {processor.knee_db:g} dB")
        return lines
    if kind == "width":
        text = f"width {processor.width * 100:.0f} %"
        if processor.bass_mono_hz > 0:
            text += f", bass mono below {_hz(processor.bass_mono_hz)}"
        return [text]
    if kind == "saturation":
        if processor.mix == 0.0:
            return ["saturation off"]
        return [f"saturation {processor.drive_db:.1f} dB drive, {processor.mix * 100:.0f} % mix"]
    return [f"{kind}: " + ", ".join(f"{k} {v}" for k, v in processor.to_dict().items() if k != "kind")]


def chain_lines(preset):
    """Plain-words lines for every processor of ``preset``'s chain that acts (no measured reductions)."""
    lines = []
    for processor in preset.chain:
        if not processor.bypassed:
            lines += processor_lines(processor)
    return lines


def explain(report, reductions):
    """The ``explain`` list of a master's report: input trim, the fit (if any), each processor,
    the loudness gain and the limiter, the target. ``reductions``: ``{chain index: (bands,) dB}``
    for the multiband stages."""
    from roomtone.mastering.presets import parse_preset

    preset = parse_preset({k: v for k, v in report["preset"].items() if k != "source"})
    stages = {s["stage"]: s for s in report["stages"]}
    lines = [f"input trim {stages['input_trim']['gain_db']:+.1f} dB to the -18 LUFS working level"]
    fit = report.get("fit")
    if fit:
        dist = fit.get("tonal_distance_db", {})
        text = f"chain fitted to {', '.join(fit['target']['sources'])}"
        if dist:
            text += f": tonal distance {dist['input']:.1f} dB before, {dist['output']:.1f} dB after"
        lines.append(text)
        for band in fit.get("against_target") or []:
            lines.append(f"{_hz(band['hz'])} (octave) moved {band['moved_db']:+.1f} dB where the target asks "
                         f"{band['asked_db']:+.1f} dB")
        dyn = fit.get("dynamics")
        if dyn and dyn.get("input_spread_lu") is not None and "threshold_db" in dyn:
            text = (f"compressor thresholds {dyn['threshold_offset_db']:+.1f} dB"
                    + (f", ratios x{dyn['ratio_scale']:.2f}" if dyn.get("ratio_scale", 1.0) != 1.0 else "")
                    + f" for a short-term spread of {dyn['target_spread_lu']:.1f} LU (input {dyn['input_spread_lu']:.1f} LU"
                    + (f", output {dyn['output_spread_lu']:.1f} LU" if dyn.get("output_spread_lu") is not None else "")
                    + ")" + ("" if dyn["reachable"] else f": {dyn['note']}"))
            lines.append(text)
    for part in ("assistant", "fit"):
        bound = (report.get(part) or {}).get("width_bound") or {}
        if bound.get("reason"):
            lines.append(bound["reason"])
    for index, processor in enumerate(preset.chain):
        if processor.bypassed:
            continue
        lines += processor_lines(processor, reductions.get(index))
    limiter = stages.get("limiter", {})
    text = f"loudness gain {stages['loudness_gain']['gain_db']:+.1f} dB, limiter {abs(limiter.get('gain_db', 0.0)):.2f} LU"
    if limiter.get("limited_percent"):
        text += f" (peaks down up to {limiter['gain_reduction_max_db']:.1f} dB)"
    lines.append(text)
    target = report["target"]
    source = target.get("source") or report.get("platform") or "explicit"
    lines.append(f"target {target['integrated_lufs']:.1f} LUFS, true peak <= {target['true_peak_dbtp']:.1f} dBTP ({source})")
    return lines
