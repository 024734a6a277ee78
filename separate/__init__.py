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

The API is imported on first use, so the CLI starts quickly.
"""

__all__ = ["separate", "separate_file"]


def __getattr__(name):
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("roomtone.separate.api"), name)
    raise AttributeError(f"module 'roomtone.separate' has no attribute {name!r}")
