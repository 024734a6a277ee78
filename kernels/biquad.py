"""Second-order-section (biquad) cascades, transposed direct form II, float64 state.

:func:`sos_filter` runs sample by sample with every channel and every section advanced inside it:
the recurrences of different channels and sections are independent, so they overlap in the CPU
pipeline. :func:`section_pass2` is the block form the whole-file kernels use (K-weighting, the
multiband split): one section over a block of two channels, the state in registers.
:func:`sos_filter_stream` carries the state between blocks; :func:`sos_filter_backward` runs from
the last sample to the first (a zero-phase filter's second pass, in place, no reversed copy).
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _section(v, sos, s, z1, z2, row):
    """One transposed direct form II step of section ``s`` with state row ``row``."""
    out = sos[s, 0] * v + z1[row, s]
    z1[row, s] = sos[s, 1] * v - sos[s, 4] * out + z2[row, s]
    z2[row, s] = sos[s, 2] * v - sos[s, 5] * out
    return out


@njit(cache=True, nogil=True)
def _cascade(x, sos, out, backward):
    """The cascade from zero state over the samples in order, or from the last to the first."""
    n_ch, n = x.shape
    n_sec = sos.shape[0]
    z1 = np.zeros((n_ch, n_sec))
    z2 = np.zeros((n_ch, n_sec))
    for k in range(n):
        i = n - 1 - k if backward else k
        for c in range(n_ch):
            v = np.float64(x[c, i])
            for s in range(n_sec):
                v = _section(v, sos, s, z1, z2, c)
            out[c, i] = v
    return out


@njit(cache=True, nogil=True)
def sos_filter(x, sos, out):
    """Filter every channel of ``x`` through the cascade ``sos`` into ``out`` (float64 state and
    arithmetic; ``out`` may be float32 to halve the memory of a whole-file result). Returns ``out``.

    Shape:
        x: (channels, samples) float32 or float64
        sos: (sections, 6) float64 rows ``b0 b1 b2 a0 a1 a2`` with ``a0 == 1``
        out: (channels, samples) float32 or float64 (may be ``x`` itself: in place)
    """
    return _cascade(x, sos, out, False)


@njit(cache=True, nogil=True)
def pack_sections(sos):
    """SOS rows ``b0 b1 b2 a0 a1 a2`` (``a0 == 1``) as the flat ``b0 b1 b2 a1 a2`` per section that
    :func:`section_pass2` reads (one spare slot at the end, so an empty cascade is still an array).
    Shape: (sections, 6) -> (sections * 5 + 1,) float64."""
    co = np.zeros(sos.shape[0] * 5 + 1)
    for s in range(sos.shape[0]):
        for t in range(5):
            co[s * 5 + t] = sos[s, t if t < 3 else t + 1]  # columns 0 1 2 4 5
    return co


@njit(cache=True, nogil=True)
def section_pass2(a, b, m, co, ci, z, za, zb):
    """Rows ``a`` and ``b`` (two channels) in place through one section, coefficients
    ``co[ci : ci + 5]`` = b0 b1 b2 a1 a2 (transposed direct form II), states ``z[za : za + 2]`` and
    ``z[zb : zb + 2]``: two independent recurrences in one loop with their state in registers."""
    b0 = co[ci]
    b1 = co[ci + 1]
    b2 = co[ci + 2]
    a1 = co[ci + 3]
    a2 = co[ci + 4]
    s1a = z[za]
    s2a = z[za + 1]
    s1b = z[zb]
    s2b = z[zb + 1]
    for j in range(m):
        va = a[j]
        vb = b[j]
        oa = b0 * va + s1a
        ob = b0 * vb + s1b
        s1a = b1 * va - a1 * oa + s2a
        s1b = b1 * vb - a1 * ob + s2b
        s2a = b2 * va - a2 * oa
        s2b = b2 * vb - a2 * ob
        a[j] = oa
        b[j] = ob
    z[za] = s1a
    z[za + 1] = s2a
    z[zb] = s1b
    z[zb + 1] = s2b


@njit(cache=True, nogil=True)
def sos_filter_stream(x, sos, z, out):
    """:func:`sos_filter` starting from the state ``z`` and leaving its final state there, so a
    signal filtered block after block (the same ``z`` passed on) equals one call on the whole, bit
    for bit. Returns ``out``.

    Shape:
        x, out: (channels, samples) float32 or float64 (``out`` may be ``x``)
        sos: (sections, 6) float64 rows ``b0 b1 b2 a0 a1 a2`` with ``a0 == 1``
        z: (channels, sections, 2) float64, updated (zeros: a fresh stream)
    """
    n_ch, n = x.shape
    n_sec = sos.shape[0]
    for i in range(n):
        for c in range(n_ch):
            v = np.float64(x[c, i])
            for s in range(n_sec):
                y = sos[s, 0] * v + z[c, s, 0]
                z[c, s, 0] = sos[s, 1] * v - sos[s, 4] * y + z[c, s, 1]
                z[c, s, 1] = sos[s, 2] * v - sos[s, 5] * y
                v = y
            out[c, i] = v
    return out


@njit(cache=True, nogil=True)
def sos_filter_backward(x, sos, out):
    """Every channel of ``x`` through the cascade ``sos`` from its last sample to its first (the
    time-reversed signal filtered and reversed back; zero state at the end): the second pass of a
    zero-phase filter, in place without a reversed copy (``out`` may be ``x``). The same arithmetic
    as :func:`sos_filter` on the reversed signal, so the same samples bit for bit. Returns ``out``.

    Shape: x, out (channels, samples) float32 or float64; sos (sections, 6) float64.
    """
    return _cascade(x, sos, out, True)
