"""Spleeter 2-stem's network in Flax NNX (:mod:`roomtone.separate.spleeter` has the pipeline, the
checkpoint conversion and the job's class). Importing this module imports JAX and Flax:
:func:`roomtone.separate.spleeter.build_model` imports it where the model is built.

Shape: magnitudes (batch, frames, bins, channels) -> the same (mask x input), per stem.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from roomtone.separate.spleeter import ENCODER


def _zeros(*shape):
    return jnp.zeros(shape, jnp.float32)


class ConvLayer(nnx.Module):
    """A convolution (HWIO kernel) with an optional folded batch norm (scale, shift)."""

    def __init__(self, kh, kw, cin, cout, norm=True):
        self.kernel = nnx.Param(_zeros(kh, kw, cin, cout))
        self.bias = nnx.Param(_zeros(cout))
        self.norm = norm
        if norm:
            self.scale = nnx.Param(_zeros(cout))
            self.shift = nnx.Param(_zeros(cout))


class SpleeterUNet(nnx.Module):
    """One stem's U-Net. Shape: magnitudes (batch, frames, bins, channels) -> the same (the
    estimated stem magnitude: mask x input); frames and bins multiples of 64."""

    def __init__(self, channels=2):
        widths = (channels,) + ENCODER
        self.down = nnx.List([ConvLayer(5, 5, widths[i], widths[i + 1]) for i in range(6)])
        ups = []
        for i in range(6):
            cin = ENCODER[5] if i == 0 else 2 * ENCODER[5 - i]
            cout = ENCODER[4 - i] if i < 5 else 1
            ups.append(ConvLayer(5, 5, cin, cout))
        self.up = nnx.List(ups)
        self.mask = ConvLayer(4, 4, 1, channels, norm=False)

    def __call__(self, mag):
        def conv(x, layer, **kw):
            y = jax.lax.conv_general_dilated(x, layer.kernel[...], dimension_numbers=("NHWC", "HWIO", "NHWC"), **kw)
            return y + layer.bias[...]

        skips, h = [], mag
        for layer in self.down:
            c = conv(h, layer, window_strides=(2, 2), padding=((1, 2), (1, 2)))
            skips.append(c)
            h = jax.nn.leaky_relu(c * layer.scale[...] + layer.shift[...], 0.2)
        h = skips[-1]  # the decoder starts from the last encoder conv, before its normalisation
        for i, layer in enumerate(self.up):
            if i:
                h = jnp.concatenate([skips[5 - i], h], axis=-1)
            # transposed conv 5x5 stride 2 cropped [1:-2]: a conv over the 2x-dilated input with
            # the flipped kernel (flipped at load time), padded 4 - 1 before and 4 - 2 after
            h = conv(h, layer, window_strides=(1, 1), padding=((3, 2), (3, 2)), lhs_dilation=(2, 2))
            h = jax.nn.relu(h) * layer.scale[...] + layer.shift[...]
        m = jax.nn.sigmoid(conv(h, self.mask, window_strides=(1, 1), padding=((3, 3), (3, 3)),
                                rhs_dilation=(2, 2)))
        return m * mag


class Spleeter2Stems(nnx.Module):
    """The two U-Nets (vocals, accompaniment)."""

    def __init__(self, channels=2):
        self.vocals = SpleeterUNet(channels)
        self.accompaniment = SpleeterUNet(channels)
