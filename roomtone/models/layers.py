"""Layers the model jobs share, in Flax NNX. Importing this module imports JAX and Flax: only the
model modules import it (``*_model.py``, :mod:`roomtone.enhance.dfn3`,
:mod:`roomtone.separate.speaker_encoder`), and they only from where a model is built.

- :func:`gru_scan`: a GRU over time from precomputed input projections (``jax.lax.scan``), Cho et
  al. 2014 with the reset gate applied to the recurrent projection (the cuDNN/PyTorch variant,
  ONNX's ``linear_before_reset=1``): ``n = tanh(W_n x + r * (U_n h + b_n))``,
  ``h' = (1 - z) n + z h``; the gates' order in the weights is ``r, z, n`` (ours) or ``z, r, n``
  (PyTorch's and ONNX's, :class:`roomtone.enhance.dfn3.GRU`). The one GRU of the suite.
- :func:`lstm_scan`: an LSTM over time from precomputed input projections (``jax.lax.scan``),
  Hochreiter & Schmidhuber 1997 with the forget gate of Gers et al. 2000, no peepholes (PyTorch's
  and cuDNN's ``nn.LSTM``): ``c' = f c + i g``, ``h' = o tanh(c')``, gates in PyTorch's order
  ``i, f, g, o``. The one LSTM of the suite (the speaker encoder's).
- :class:`BiGRU`: a bidirectional GRU layer (forward and backward over the frames, outputs
  concatenated), the unit of the enhance denoiser and the separator.
"""

import jax
import jax.numpy as jnp
from flax import nnx


def gru_scan(x_proj, w_h, b_h, reverse=False, *, h0=None, gates="rzn", precision=None):
    """GRU over time from the input projections ``x_proj`` (``W x + b_i`` for every frame, gates in
    the order ``gates``: ``"rzn"`` or ``"zrn"``), recurrent weights ``w_h`` and bias ``b_h`` in the
    same order, from the state ``h0`` (None: zeros), backwards over the frames with ``reverse``;
    ``precision``: the recurrent product's (``jax.lax.Precision``; None: JAX's default).

    Shape: x_proj (batch, frames, 3H), w_h (H, 3H), b_h (3H,), h0 (batch, H) -> (outputs (batch,
    frames, H), last state (batch, H))."""
    hidden = w_h.shape[0]
    if gates not in ("rzn", "zrn"):
        raise ValueError(f"gate order {gates!r}: 'rzn' or 'zrn'")
    r0, z0 = (0, hidden) if gates == "rzn" else (hidden, 0)

    def step(h, xp):
        hp = jnp.matmul(h, w_h, precision=precision) + b_h
        r = jax.nn.sigmoid(xp[:, r0:r0 + hidden] + hp[:, r0:r0 + hidden])
        z = jax.nn.sigmoid(xp[:, z0:z0 + hidden] + hp[:, z0:z0 + hidden])
        n = jnp.tanh(xp[:, 2 * hidden:] + r * hp[:, 2 * hidden:])
        h = (1.0 - z) * n + z * h
        return h, h

    if h0 is None:
        h0 = jnp.zeros((x_proj.shape[0], hidden), x_proj.dtype)
    h, hs = jax.lax.scan(step, h0, jnp.swapaxes(x_proj, 0, 1), reverse=reverse)
    return jnp.swapaxes(hs, 0, 1), h


def lstm_scan(x_proj, w_h, reverse=False, *, h0=None, c0=None, precision=None):
    """LSTM over time from the input projections ``x_proj`` (``W x + b_i + b_h`` for every frame,
    gates in PyTorch's order ``i, f, g, o``) and the recurrent weights ``w_h`` in the same order, from
    the state ``(h0, c0)`` (None: zeros), backwards over the frames with ``reverse``; ``precision``:
    the recurrent product's (``jax.lax.Precision``; None: JAX's default)::

        i, f, o = sigmoid(x_i + h U_i), sigmoid(x_f + h U_f), sigmoid(x_o + h U_o)
        g = tanh(x_g + h U_g);  c' = f c + i g;  h' = o tanh(c')

    Shape: x_proj (batch, frames, 4H), w_h (H, 4H), h0 and c0 (batch, H) -> (outputs (batch,
    frames, H), (last h (batch, H), last c (batch, H)))."""
    hidden = w_h.shape[0]
    if x_proj.shape[-1] != 4 * hidden:
        raise ValueError(f"input projections of {x_proj.shape[-1]} features; an LSTM of {hidden} needs {4 * hidden}")

    def step(state, xp):
        h, c = state
        z = xp + jnp.matmul(h, w_h, precision=precision)
        i = jax.nn.sigmoid(z[:, :hidden])
        f = jax.nn.sigmoid(z[:, hidden:2 * hidden])
        g = jnp.tanh(z[:, 2 * hidden:3 * hidden])
        o = jax.nn.sigmoid(z[:, 3 * hidden:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((x_proj.shape[0], hidden), x_proj.dtype)
    state = (zeros if h0 is None else h0, zeros if c0 is None else c0)
    last, hs = jax.lax.scan(step, state, jnp.swapaxes(x_proj, 0, 1), reverse=reverse)
    return jnp.swapaxes(hs, 0, 1), last


class BiGRU(nnx.Module):
    """A bidirectional GRU layer. Parameters: ``fwd_in``/``bwd_in`` (Linear to 3H), ``fwd_h``/``bwd_h``
    (H, 3H) orthogonal-initialised recurrent weights, ``fwd_b``/``bwd_b`` (3H,), gates ``r, z, n``.

    Shape: (batch, frames, features) -> (batch, frames, 2 hidden)."""

    def __init__(self, features, hidden, rngs):
        self.fwd_in = nnx.Linear(features, 3 * hidden, rngs=rngs)
        self.bwd_in = nnx.Linear(features, 3 * hidden, rngs=rngs)
        init = nnx.initializers.orthogonal()
        self.fwd_h = nnx.Param(jnp.concatenate([init(rngs.params(), (hidden, hidden)) for _ in range(3)], 1))
        self.bwd_h = nnx.Param(jnp.concatenate([init(rngs.params(), (hidden, hidden)) for _ in range(3)], 1))
        self.fwd_b = nnx.Param(jnp.zeros(3 * hidden))
        self.bwd_b = nnx.Param(jnp.zeros(3 * hidden))

    def __call__(self, x):
        f, _ = gru_scan(self.fwd_in(x), self.fwd_h[...], self.fwd_b[...], False)
        b, _ = gru_scan(self.bwd_in(x), self.bwd_h[...], self.bwd_b[...], True)
        return jnp.concatenate([f, b], axis=-1)
