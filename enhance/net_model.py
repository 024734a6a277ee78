"""The ``roomtone`` denoiser's network (Flax NNX; :mod:`roomtone.enhance.net` has the signal path,
the features and the job's class). Importing this module imports JAX and Flax:
:func:`roomtone.enhance.net.build_model` imports it where the model is built.

Shape: features (batch, frames, BINS + 2 LOW_BINS) -> gain (batch, frames, BINS - LOW_BINS),
mask_re, mask_im (batch, frames, LOW_BINS).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from roomtone.enhance.net import BINS, LOW_BINS
from roomtone.models.layers import BiGRU


class DenoiserNet(nnx.Module):
    """A linear encoder (GELU), ``arch.layers`` bidirectional GRUs, the encoder output concatenated
    back, then a sigmoid gain head (bins from LOW_BINS up) and a complex mask head (bins below,
    magnitude bounded by 1.2)."""

    def __init__(self, arch, rngs):
        self.encoder = nnx.Linear(BINS + 2 * LOW_BINS, arch.embed, rngs=rngs)
        self.grus = nnx.List([BiGRU(arch.embed if i == 0 else 2 * arch.hidden, arch.hidden, rngs)
                              for i in range(arch.layers)])
        self.gain_head = nnx.Linear(2 * arch.hidden + arch.embed, BINS - LOW_BINS, rngs=rngs)
        self.mask_head = nnx.Linear(2 * arch.hidden + arch.embed, 2 * LOW_BINS, rngs=rngs)

    def __call__(self, features):
        """features (batch, frames, BINS + 2 LOW_BINS) -> (gain (batch, frames, BINS - LOW_BINS),
        mask_re, mask_im (batch, frames, LOW_BINS))."""
        e = jax.nn.gelu(self.encoder(features))
        h = e
        for gru in self.grus:
            h = gru(h)
        h = jnp.concatenate([h, e], axis=-1)
        gain = jax.nn.sigmoid(self.gain_head(h))
        m = self.mask_head(h)
        re, im = m[..., :LOW_BINS], m[..., LOW_BINS:]
        mag = jnp.sqrt(re * re + im * im + 1e-8)
        scale = 1.2 * jnp.tanh(mag) / mag  # bounded magnitude, direction kept
        return gain, re * scale, im * scale
