"""The model layer every model job shares: STFT/ISTFT in JAX (:mod:`.stft`), weight files
(:mod:`.weights`), chunked application (:mod:`.apply`), and the JAX runtime set-up: device choice
and the persistent compilation cache JAX is configured with (:mod:`.runtime`).

Importing this package imports JAX (about 1 s): only model jobs do. Models themselves never read
files or chunk audio; they are Flax NNX modules rebuilt from weight files with ``nnx.eval_shape``
(never randomly initialised at run time).
"""
