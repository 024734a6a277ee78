"""Training tooling of the separator, kept out of the wheel (pyproject's ``packages`` does not list
it; the repository's editable install imports it as ``roomtone.separate.training``): the data
staging (:mod:`.pop909` renders POP909 MIDI one stem at a time, :mod:`.multitrack` and
:mod:`.modules` stage real multitrack songs and tracker modules), the mixtures drawn from them
(:mod:`.data`), the training (:mod:`.train`) and the fusion powers' search (:mod:`.fusion`).
Nothing the ``separate`` command or :mod:`roomtone.separate.api` runs imports these.
"""
