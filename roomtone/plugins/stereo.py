"""Stereo: mid/side width with an optional mono bass, and the constant-power pan.

Shape: audio (channels, samples) float32 in and out, same shape.
"""

import dataclasses

import numpy as np

from roomtone import filters
from roomtone.kernels.biquad import sos_filter
from roomtone.plugins.units import safe_freq
from roomtone.processor import Processor, clamp, field_range, param, register


@register("width")
@dataclasses.dataclass(frozen=True)
class StereoWidth(Processor):
    """Mid/side width on the first two channels (L, R); ``width`` scales the side signal.

    ``bass_mono_hz`` > 0 high-passes the side (2nd-order Butterworth), centring the low end.
    Mono input is returned unchanged; channels beyond the first two pass through.
    """

    width: float = param(1.0, 0.0, 2.0, "x")
    bass_mono_hz: float = param(0.0, 0.0, 500.0, "Hz")

    @property
    def bypassed(self):
        return self.width == 1.0 and self.bass_mono_hz == 0.0

    @classmethod
    def example(cls):
        return cls(width=1.3, bass_mono_hz=120.0)

    def twin_params(self):
        """The JAX twin's parameters (:mod:`roomtone.plugins.twin`)."""
        return {"width": self.width, "bass_mono_hz": self.bass_mono_hz}

    @classmethod
    def from_twin(cls, p):
        """The width of fitted twin parameters ``p`` (clamped into range, rounded)."""
        return cls(width=clamp(p["width"], field_range(cls, "width")),
                   bass_mono_hz=clamp(p["bass_mono_hz"], field_range(cls, "bass_mono_hz"), 2))

    @staticmethod
    def render_twin(p, signal, ctx):
        """The JAX render: mid/side, the side scaled and high-passed on the FFT bins (skipped
        exactly at 0 Hz, as :meth:`process` skips it)."""
        from roomtone.plugins import twin

        jnp = twin.jnp
        if signal.shape[0] < 2:
            return signal
        mid = 0.5 * (signal[0] + signal[1])
        side = 0.5 * (signal[0] - signal[1]) * p["width"]
        f = p["bass_mono_hz"]
        hp = twin.response(twin.butterworth2(jnp.maximum(twin.safe_hz(f, ctx.sample_rate), 1e-3), ctx.sample_rate,
                                             "high"), ctx.z1, ctx.z2)
        side = twin.filtered(side, jnp.where(f > 0.0, hp, 1.0), ctx)
        return jnp.concatenate([jnp.stack([mid + side, mid - side]), signal[2:]], axis=0)

    def process(self, audio, sample_rate):
        if audio.shape[0] < 2:
            return audio.copy()
        out = np.array(audio, dtype=np.float32 if audio.dtype == np.float32 else np.float64)
        if self.bass_mono_hz > 0.0:
            left = audio[0].astype(np.float64)
            right = audio[1].astype(np.float64)
            mid = 0.5 * (left + right)
            side = (0.5 * (left - right) * self.width)[None]
            sos_filter(side, filters.butterworth2_sos(safe_freq(self.bass_mono_hz, sample_rate), sample_rate, "high"),
                       side)
            out[0] = mid + side[0]
            out[1] = mid - side[0]
            return out
        # Without the side filter, L' = a L + b R and R' = b L + a R with a = (1 + width) / 2,
        # b = (1 - width) / 2: mid/side in two products per sample, in the input's precision.
        a, b = out.dtype.type(0.5 * (1.0 + self.width)), out.dtype.type(0.5 * (1.0 - self.width))
        left, right = audio[0], audio[1]
        out[0] = a * left + b * right
        out[1] = b * left + a * right
        return out


@register("pan")
@dataclasses.dataclass(frozen=True)
class Pan(Processor):
    """Constant-power pan (sine/cosine law, -3 dB in each channel at the centre): ``position``
    -1 is hard left, 0 the centre, +1 hard right. The left channel is scaled by
    ``sqrt(2) cos(theta)``, the right by ``sqrt(2) sin(theta)``, ``theta = (position + 1) pi / 4``:
    unity at the centre, so a mono source placed on both channels (a job makes a mono track stereo
    first) lands with constant power at every position, and a stereo source is balanced. Mono
    input is returned unchanged (nothing to place); channels beyond the first two pass through.

    >>> import numpy as np
    >>> out = Pan(position=-1.0)(np.ones((2, 4), np.float32), 48000)
    >>> float(out[0].max()), float(out[1].max())
    (1.4142135381698608, 0.0)
    """

    position: float = param(0.0, -1.0, 1.0, "(-1 left .. +1 right)")

    @property
    def bypassed(self):
        return self.position == 0.0

    @classmethod
    def example(cls):
        return cls(position=-0.5)

    def gains(self):
        """``(left, right)`` amplitude gains (unity at the centre)."""
        theta = (self.position + 1.0) * np.pi / 4.0
        return float(np.sqrt(2.0) * np.cos(theta)), float(np.sqrt(2.0) * np.sin(theta))

    def twin_params(self):
        """The JAX twin's parameters (:mod:`roomtone.plugins.twin`)."""
        return {"position": self.position}

    @classmethod
    def from_twin(cls, p):
        """The pan of a fitted twin parameter (clamped into range, rounded)."""
        return cls(position=clamp(p["position"], field_range(cls, "position")))

    @staticmethod
    def render_twin(p, signal, ctx):
        """The JAX render: the same sine/cosine law."""
        from roomtone.plugins import twin

        jnp = twin.jnp
        if signal.shape[0] < 2:
            return signal
        theta = (p["position"] + 1.0) * jnp.pi / 4.0
        left, right = jnp.sqrt(2.0) * jnp.cos(theta), jnp.sqrt(2.0) * jnp.sin(theta)
        return jnp.concatenate([signal[:1] * left, signal[1:2] * right, signal[2:]], axis=0)

    def process(self, audio, sample_rate):
        if audio.shape[0] < 2:
            return audio.copy()
        left, right = self.gains()
        out = audio.copy()
        out[0] *= np.float32(left)
        out[1] *= np.float32(right)
        return out
