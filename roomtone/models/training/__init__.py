"""Training tooling shared by the model jobs, kept out of the wheel (pyproject's ``packages`` does
not list it; the repository's editable install imports it as ``roomtone.models.training``): the one training
loop (:mod:`.loop`) and the training-data conventions (:mod:`.datasets`). Each job's own tooling is in its ``training``
subpackage (``roomtone.separate.training``, ``roomtone.enhance.training``,
``roomtone.mastering.training``); nothing a command runs imports any of them.
"""
