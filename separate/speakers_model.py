"""The speaker separator's network (Flax NNX; :mod:`roomtone.separate.speakers_net` has the signal
path, the features and the model's class). Importing this module imports JAX and Flax: only
:func:`roomtone.separate.speakers_net.build_model` imports it, where the model is built.

Shape: features (batch, frames, 3 BINS) -> masks (batch, sources + 1, frames, BINS), summing to 1
over the sources and the residual (noise) output.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from roomtone.models.layers import BiGRU
from roomtone.separate.speakers_net import BINS


class SpeakerSeparatorNet(nnx.Module):
    """A linear encoder (GELU), ``arch.layers`` bidirectional GRUs over the frames, the encoder
    output concatenated back, then one linear head of ``arch.sources + 1`` magnitude masks per bin,
    a softmax over them: the speakers' masks and the residual's (noise, what no speaker holds)
    partition the mixture, so the outputs sum back to it exactly (uPIT-BLSTM's mask estimation,
    Kolbaek et al. 2017, with the softmax of Wisdom et al.'s MixIT outputs)."""

    def __init__(self, arch, rngs):
        self.sources = arch.sources
        self.encoder = nnx.Linear(3 * BINS, arch.embed, rngs=rngs)
        self.grus = nnx.List([BiGRU(arch.embed if i == 0 else 2 * arch.hidden, arch.hidden, rngs)
                              for i in range(arch.layers)])
        self.head = nnx.Linear(2 * arch.hidden + arch.embed, (arch.sources + 1) * BINS, rngs=rngs)

    def __call__(self, features):
        """features (batch, frames, 3 BINS) -> masks (batch, sources + 1, frames, BINS)."""
        e = jax.nn.gelu(self.encoder(features))
        h = e
        for gru in self.grus:
            h = gru(h)
        logits = self.head(jnp.concatenate([h, e], axis=-1))
        batch, frames = logits.shape[:2]
        logits = logits.reshape(batch, frames, self.sources + 1, BINS)
        return jnp.moveaxis(jax.nn.softmax(logits, axis=2), 2, 1)
