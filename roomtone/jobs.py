"""Jobs by name, for chaining them (``mix --master``, a script that separates then masters): each
job's library call is looked up here and imported only when it runs, so no job imports another
and a plain command never loads the jobs it does not run.

    from roomtone.jobs import job
    mastered, report = job("master")(mixed, 48000, preset="warm", platform="spotify")
"""

import importlib

ENTRY_POINTS = {
    "master": "roomtone.mastering.api:master",
    "enhance": "roomtone.enhance.api:enhance",
    "separate": "roomtone.separate.api:separate",
    "speakers": "roomtone.separate.voices:speakers",
    "mix": "roomtone.mix.api:mix",
}


def job(name):
    """The library call of job ``name`` (one of :data:`ENTRY_POINTS`)."""
    if name not in ENTRY_POINTS:
        raise KeyError(f"no job {name!r}; jobs: {', '.join(sorted(ENTRY_POINTS))}")
    module, function = ENTRY_POINTS[name].split(":")
    return getattr(importlib.import_module(module), function)
