"""Training tooling of the mastering assistant, kept out of the wheel (pyproject's ``packages``
does not list it; the repository's editable install imports it as ``roomtone.mastering.training``):
the self-supervised training and the calibration (:mod:`.train_assistant`). Nothing the ``master``
command or :mod:`roomtone.mastering.api` runs imports it.
"""
