"""The mastering assistant's network (Flax NNX; :mod:`roomtone.mastering.assistant` has the
features, the chain it sets and the loading). Importing this module imports JAX and Flax:
:func:`roomtone.mastering.assistant.build_model` imports it where the model is built, so a plain
``master`` never does.

Shape: x (batch, features) standardised -> (batch, N_OUT).
"""

import jax
from flax import nnx

from roomtone.mastering.assistant import N_OUT, n_features


class AssistantNet(nnx.Module):
    """``arch.layers`` GELU layers of ``arch.hidden`` units, then a linear output (initialised
    near zero: an untrained network proposes the preset itself)."""

    def __init__(self, arch, rngs):
        sizes = [n_features()] + [arch.hidden] * arch.layers
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.out = nnx.Linear(sizes[-1], N_OUT, kernel_init=nnx.initializers.normal(1e-2), rngs=rngs)

    def __call__(self, x):
        """x (batch, features) standardised -> (batch, 12): u (11) and v (1) as in the fitter."""
        for layer in self.layers:
            x = jax.nn.gelu(layer(x))
        return self.out(x)
