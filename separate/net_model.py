"""The ``roomtone`` separator's network (Flax NNX; :mod:`roomtone.separate.net` has the signal
path, the features, the masks and the job's class). Importing this module imports JAX and Flax:
:func:`roomtone.separate.net.build_model` imports it where the model is built.

Shape: features (batch, frames, 2 UNITS) -> mask logits (batch, stems, channels 2, frames, UNITS).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from roomtone.models.layers import BiGRU
from roomtone.separate.net import STEMS, UNITS


class StemHead(nnx.Module):
    """One stem's two-layer head: GELU hidden layer, mask logits for both channels and every unit.
    Shape: (..., features) -> (..., 2 UNITS)."""

    def __init__(self, features, width, rngs):
        self.hidden = nnx.Linear(features, width, rngs=rngs)
        self.out = nnx.Linear(width, 2 * UNITS, rngs=rngs)

    def __call__(self, h):
        return self.out(jax.nn.gelu(self.hidden(h)))


class SeparatorNet(nnx.Module):
    """A linear encoder with layer normalisation and tanh, ``arch.layers`` bidirectional GRUs, the
    encoder output concatenated back, a :class:`StemHead` per stem."""

    def __init__(self, arch, rngs):
        self.encoder = nnx.Linear(2 * UNITS, arch.embed, rngs=rngs)
        self.norm = nnx.LayerNorm(arch.embed, rngs=rngs)
        self.grus = nnx.List([BiGRU(arch.embed if i == 0 else 2 * arch.hidden, arch.hidden, rngs)
                              for i in range(arch.layers)])
        self.heads = nnx.List([StemHead(2 * arch.hidden + arch.embed, arch.head, rngs) for _ in STEMS])

    def __call__(self, features):
        e = jnp.tanh(self.norm(self.encoder(features)))
        h = e
        for gru in self.grus:
            h = gru(h)
        h = jnp.concatenate([h, e], axis=-1)
        logits = jnp.stack([head(h) for head in self.heads], axis=1)  # (batch, stems, frames, 2 UNITS)
        b, s, t, _ = logits.shape
        return jnp.transpose(logits.reshape(b, s, t, 2, UNITS), (0, 1, 3, 2, 4))
