"""Stage 2 of the mix job: a differentiable console fitted to a reference mix (mixing-style
transfer), starting from stage 1's settings.

The console: per group a gain offset (dB, at most :data:`MAX_GROUP_DB` either way from stage 1,
so no track is pushed out of the mix; stage 1's balance within each group is kept), per group an EQ (the plugins' :class:`~roomtone.plugins.Equalizer`:
a low shelf at 150 Hz, a bell at 1 kHz and a high shelf at 5 kHz, each within
:data:`MAX_EQ_DB`). Its JAX twin is the EQ's own (:func:`roomtone.plugins.twin.eq_response`).

The features, loudness-normalised: the mix's mid and side power in 1/3-octave bands (IEC 61260
centres 31.5 Hz-16 kHz), in dB, each less the mean over the mid bands (the spectral shape and the
side's level against the mid: width), floored :data:`FLOOR_DB` under that mean; the side's
distances weigh :data:`SIDE_WEIGHT`. A reference is another recording (or another section): only
the groups' levels and tone are fitted to it, never single tracks, whose notes differ there. The model: tracks are nearly uncorrelated, so the mix's
band powers are the sum of each processed track's (gain^2 |H_group(f)|^2 times the track's band
powers after stage 1, measured once per track): the fit works on (tracks, 2, bands) numbers, not
on audio, and so does not grow with the session's length. The loss: the mean squared dB distance
of the features to the reference's, plus a pull towards stage 1 (``(offset / 6 dB)^2`` per track
and ``(eq / 6 dB)^2`` per section, weighted :data:`PULL`). Adam (optax), :data:`STEPS` steps,
JIT-compiled once per session shape (tracks, groups).

Shape: the reference (channels, samples) at the session rate.
"""

import numpy as np

MAX_GROUP_DB = 6.0
MAX_EQ_DB = 6.0
STEPS = 400
LEARNING_RATE = 0.05
PULL = 0.05
FLOOR_DB = 50.0
SIDE_WEIGHT = 0.5
EQ_SHAPE = ((150.0, "low"), (1000.0, "bell"), (5000.0, "high"))
CENTRES_HZ = 1000.0 * 2.0 ** (np.arange(-15, 13) / 3.0)  # 31.5 Hz .. 16 kHz


def band_powers(audio, rate, frame=8192):
    """Mean mid and side power per 1/3-octave band (Welch, Hann frames of ``frame`` samples, half
    overlap). Shape: (channels, n) -> (2, bands) float64 (mono: side 0)."""
    x = np.asarray(audio, np.float64)
    mid = x.mean(axis=0)
    side = 0.5 * (x[0] - x[1]) if x.shape[0] > 1 else np.zeros_like(mid)
    hop = frame // 2
    window = np.hanning(frame)
    freqs = np.fft.rfftfreq(frame, 1.0 / rate)
    lo, hi = CENTRES_HZ * 2 ** (-1 / 6), CENTRES_HZ * 2 ** (1 / 6)
    masks = (freqs[None, :] >= lo[:, None]) & (freqs[None, :] < hi[:, None])
    out = np.zeros((2, CENTRES_HZ.size))
    for k, sig in enumerate((mid, side)):
        if sig.size < frame:
            sig = np.pad(sig, (0, frame - sig.size))
        count = 1 + (sig.size - frame) // hop
        power = np.zeros(freqs.size)
        for i in range(count):
            power += np.abs(np.fft.rfft(sig[i * hop:i * hop + frame] * window)) ** 2
        power /= max(count, 1)
        out[k] = (masks * power[None, :]).sum(axis=1) / np.maximum(masks.sum(axis=1), 1)
    return out


def features_db(powers, xp=np):
    """Loudness-normalised features of band powers (2, bands): dB, less the mid bands' mean,
    floored :data:`FLOOR_DB` under it (a band with next to nothing in it, an all but mono side,
    counts as that floor, not as its noise)."""
    db = 10.0 * xp.log10(xp.maximum(powers, 1e-20))
    db = db - xp.mean(db[0])
    return xp.maximum(db, -FLOOR_DB)


def _eq_processor(gains_db):
    from roomtone.plugins import Equalizer

    low, bell, high = (round(float(g), 2) for g in gains_db)
    return Equalizer(low_shelf_hz=EQ_SHAPE[0][0], low_shelf_db=low, high_shelf_hz=EQ_SHAPE[2][0], high_shelf_db=high,
                     bands=((EQ_SHAPE[1][0], bell, 0.7),))


def fit_console(plans, rate, longest, reference, rules, progress=None):
    """Fit the console to ``reference`` and write it into ``plans`` (each plan's ``gain_db`` moved,
    its ``chain`` given its group's EQ; ``eq`` in the report). Returns the fit's report."""
    import jax
    import jax.numpy as jnp
    import optax

    from roomtone.mix.api import read_at, track_chain
    from roomtone.plugins import twin

    if progress:
        progress("measuring the tracks for the reference fit")
    per_track = []
    for plan in plans:
        audio = read_at(plan["source"], rate)
        if audio.shape[0] == 1:
            audio = np.repeat(audio, 2, axis=0)
        per_track.append(band_powers(track_chain(plan)(audio, rate), rate))
    tracks = jnp.asarray(np.stack(per_track))  # (T, 2, B)
    target = jnp.asarray(features_db(band_powers(np.asarray(reference)[:2], rate)))
    groups = sorted({p["group"] for p in plans})
    member = jnp.asarray(np.array([[1.0 if p["group"] == g else 0.0 for g in groups] for p in plans]))  # (T, G)
    w = 2.0 * np.pi * CENTRES_HZ / rate
    z1, z2 = jnp.asarray(np.exp(-1j * w).astype(np.complex64)), jnp.asarray(np.exp(-2j * w).astype(np.complex64))

    def group_response(v):  # (G, 3) raw -> (G, B) power response
        g = MAX_EQ_DB * jnp.tanh(v)

        def one(gains):
            p = {"low_shelf_hz": jnp.float32(EQ_SHAPE[0][0]), "low_shelf_db": gains[0],
                 "high_shelf_hz": jnp.float32(EQ_SHAPE[2][0]), "high_shelf_db": gains[2],
                 "bands": jnp.stack([jnp.float32(EQ_SHAPE[1][0]), gains[1], jnp.float32(0.7)])[None]}
            return jnp.abs(twin.eq_response(p, rate, z1, z2)) ** 2

        return jax.vmap(one)(g)

    weights = jnp.asarray(np.array([[1.0], [SIDE_WEIGHT]]))

    def loss(params):
        offsets = member @ (MAX_GROUP_DB * jnp.tanh(params["u"]))  # (T,) dB
        h = member @ group_response(params["v"])  # (T, B)
        total = jnp.sum((10.0 ** (offsets / 10.0))[:, None, None] * h[:, None, :] * tracks, axis=0)
        feats = features_db(total, xp=jnp)
        pull = PULL * (jnp.mean((MAX_GROUP_DB * jnp.tanh(params["u"]) / 6.0) ** 2)
                       + jnp.mean((MAX_EQ_DB * jnp.tanh(params["v"]) / 6.0) ** 2))
        return jnp.sum(weights * (feats - target) ** 2) / (jnp.sum(weights) * target.shape[1]) + pull

    params = {"u": jnp.zeros(len(groups)), "v": jnp.zeros((len(groups), 3))}
    opt = optax.adam(LEARNING_RATE)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    if progress:
        progress("fitting the console to the reference")
    start = float(loss(params))
    for _ in range(STEPS):
        params, state, _ = step(params, state)
    end = float(loss(params))
    group_db = np.asarray(MAX_GROUP_DB * np.tanh(np.asarray(params["u"])))
    offsets = np.asarray(member) @ group_db
    eqs = np.asarray(MAX_EQ_DB * np.tanh(np.asarray(params["v"])))
    from roomtone.processor import Chain

    for plan, offset in zip(plans, offsets):
        plan["gain_db"] = float(plan["gain_db"] + offset)
        eq = _eq_processor(eqs[groups.index(plan["group"])])
        plan["chain"] = Chain(list(track_chain(plan)) + ([eq] if not eq.bypassed else []))
        plan["eq"] = {"low_shelf_db": eq.low_shelf_db, "bell_1k_db": eq.bands[0][1], "high_shelf_db": eq.high_shelf_db}
        plan["compressor"] = None
    return {"loss_before": round(start, 3), "loss_after": round(end, 3), "steps": STEPS,
            "group_eq_db": {g: [round(float(x), 2) for x in eqs[i]] for i, g in enumerate(groups)},
            "group_gain_db": {g: round(float(group_db[i]), 2) for i, g in enumerate(groups)},
            "track_offsets_db": {p["name"]: round(float(o), 2) for p, o in zip(plans, offsets)},
            "features": "1/3-octave mid and side power (dB) less the mid mean"}
