"""The master job: ``master(audio, sample_rate, preset=..., platform=...)`` returns the mastered
audio and a report; ``master_file(in_path, out_path, ...)`` does the same for files."""

from mastering.master import master, master_file  # noqa: F401
