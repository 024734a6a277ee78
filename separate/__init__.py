"""The separate job (stems): ``separate(audio, sample_rate, stems=...)`` returns a dict of stems that
sum back to the mixture, and a report; ``separate_file(in_path, out_dir, ...)`` writes
``out_dir/<input name>/<stem>.wav``. Separators are registered in
:mod:`roomtone.separate.separators` (``dsp``, ``dsp-wiener``, ``spleeter-2stems``).

Example, chained with the master job::

    from roomtone.audio import read_audio
    from roomtone.separate import separate
    from roomtone.mastering import master

    audio, rate, _ = read_audio("song.wav")
    stems, report = separate(audio, rate, two_stems="vocals")
    vocals_master, master_report = master(stems["vocals"], rate, preset="balanced", platform="spotify")

Voices: ``speakers(audio, sample_rate, n="auto")`` returns one track per speaker, the turns (who
spoke when), the residual and a report (:mod:`roomtone.separate.voices`).

The API is imported on first use, so the CLI starts quickly.
"""

__all__ = ["separate", "separate_file", "speakers", "speakers_file"]
_HOMES = {"speakers": "roomtone.separate.voices", "speakers_file": "roomtone.separate.voices"}


def __getattr__(name):
    if name in __all__:
        import importlib

        return getattr(importlib.import_module(_HOMES.get(name, "roomtone.separate.api")), name)
    raise AttributeError(f"module 'roomtone.separate' has no attribute {name!r}")
