"""Training tooling of the denoiser, kept out of the wheel (pyproject's ``packages`` does not list
it; the repository's editable install imports it as ``roomtone.enhance.training``): the mixtures
made on the fly (:mod:`.data`, also the benchmarks' validation sets) and the training
(:mod:`.train`). Nothing the ``enhance`` command or :mod:`roomtone.enhance.api` runs imports these.
"""
