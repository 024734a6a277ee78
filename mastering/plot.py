"""``--plot``: one PNG per master, drawn from its ``report["analysis"]``
(:func:`roomtone.mastering.master` with ``analysis=True``):

- top: the input's, the target's and the output's 1/3-octave curves (40 Hz-16 kHz, dB re each
  signal's integrated loudness, so the curves compare balance, not level); the target is the
  fit's (reference or preset ``[target]``), or the preset's ``[target]`` table when nothing was
  fitted (dashed, "not fitted"), or absent;
- bottom: short-term loudness (3 s window, LUFS) before and after, against the target.

matplotlib is the optional extra ``roomtone[plot]``, imported here only, when a plot is drawn or
checked for; the figure is built with matplotlib's object API on the Agg canvas (no ``pyplot``,
no global backend switch).
"""

import io
import os

import numpy as np

from roomtone.audio import check_output_path, write_bytes_atomic
from roomtone.errors import OptionalDependencyError, OutputError, PresetError

INSTALL_HINT = "pip install 'roomtone[plot]'"


def require_matplotlib():
    """``(Figure, FigureCanvasAgg)``, or :class:`~roomtone.errors.OptionalDependencyError` naming
    the install when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise OptionalDependencyError(f"--plot needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    return Figure, FigureCanvasAgg


def check_plot_path(plot_path, input_path=None, output_path=None):
    """Refuse a plot before any work: no matplotlib, a name not ending in ``.png``, a path that is
    the input or the output, an unwritable folder (:class:`~roomtone.errors.OutputError`)."""
    require_matplotlib()
    plot_path = os.fspath(plot_path)
    if not plot_path.lower().endswith(".png"):
        raise OutputError(f"{plot_path}: a plot is written as PNG; name it .png")
    check_output_path(plot_path, input_path)
    if output_path is not None and os.path.abspath(plot_path) == os.path.abspath(os.fspath(output_path)):
        raise OutputError(f"{plot_path}: the plot path is the output path; choose another")


def plot_paths(plan, plot_path, folder):
    """``{output: plot path}`` for a job's ``plan`` (``[(input, output)]``): ``plot_path`` itself
    for one output file; with a ``folder`` of outputs, ``plot_path`` is a folder (created) and each
    plot ``PLOT_DIR/<output name>.png``. Refused before any work: no matplotlib
    (:class:`~roomtone.errors.OptionalDependencyError` naming the extra), a name that does not fit
    the target (:class:`~roomtone.errors.PresetError`, a bad option), a clash with an output or
    an unwritable place (:class:`~roomtone.errors.OutputError`). Empty without ``plot_path``."""
    if not plot_path:
        return {}
    if folder:
        if plot_path.lower().endswith(".png"):
            raise PresetError(f"--plot {plot_path}: with a folder of outputs, --plot names a folder (each plot "
                              f"written as FOLDER/<output name>.png)")
        try:
            os.makedirs(plot_path, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{plot_path}: cannot create the plot folder ({exc.strerror})") from None
        plots = {target: os.path.join(plot_path, os.path.splitext(os.path.basename(target))[0] + ".png")
                 for _, target in plan}
    else:
        if not plot_path.lower().endswith(".png"):
            raise PresetError(f"--plot {plot_path}: a plot is written as PNG; name it .png")
        plots = {plan[0][1]: plot_path}
    outputs = {os.path.abspath(target) for _, target in plan}
    for source, target in plan:
        if os.path.abspath(plots[target]) in outputs:
            raise OutputError(f"{plots[target]}: the plot path is an output path; choose another")
        check_plot_path(plots[target], source, target)
    return plots


def _values(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def render_png(report):
    """The PNG (bytes) of a master's report; ``report["analysis"]`` must be present."""
    Figure, FigureCanvasAgg = require_matplotlib()
    data = report.get("analysis")
    if data is None:
        raise ValueError("the report has no 'analysis' section: master with analysis=True (or plot_path=...)")
    figure = Figure(figsize=(10, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    tonal, loudness = figure.subplots(2, 1)
    bands = np.asarray(data["bands_hz"])
    tonal.semilogx(bands, _values(data["input_tonal_db"]), color="0.55", lw=1.5, label="input")
    if data["target_tonal_db"] is not None:
        tonal.semilogx(bands, _values(data["target_tonal_db"]), color="tab:orange", lw=1.5, ls="--",
                       label=f"target: {data['target_source']}")
    tonal.semilogx(bands, _values(data["output_tonal_db"]), color="tab:blue", lw=2.0, label="output")
    tonal.set_xlabel("frequency (Hz), 1/3-octave bands")
    tonal.set_ylabel("band level (dB re integrated loudness)")
    tonal.set_title("tonal balance", loc="left")
    tonal.grid(True, which="both", alpha=0.3)
    tonal.legend(loc="lower left", fontsize="small")
    hop, window = data["short_term_hop_s"], data["short_term_window_s"]
    for key, color, label in (("input_short_term_lufs", "0.55", "before"),
                              ("output_short_term_lufs", "tab:blue", "after")):
        values = _values(data[key])
        loudness.plot(window + hop * np.arange(values.size), values, color=color, lw=1.2, label=label)
    target = report["target"]["integrated_lufs"]
    loudness.axhline(target, color="tab:orange", ls="--", lw=1.0, label=f"target {target:.1f} LUFS (integrated)")
    loudness.set_xlabel("time (s), each reading at the end of its window")
    loudness.set_ylabel(f"short-term loudness (LUFS, {window:g} s)")
    loudness.set_title("loudness before and after", loc="left")
    loudness.grid(True, alpha=0.3)
    loudness.legend(loc="lower right", fontsize="small")
    before, after = report["before"], report["after"]
    name = os.path.basename(report.get("output") or "") or "master"
    figure.suptitle(f"{name}: {report['preset']['name']}, {report.get('platform') or 'reference loudness'}; "
                    f"I {_fmt(before['integrated_lufs'])} -> {_fmt(after['integrated_lufs'])} LUFS, "
                    f"TP {_fmt(after['true_peak_dbtp'])} dBTP", fontsize="medium")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _fmt(value):
    return "-inf" if value is None else f"{value:.1f}"


def write_plot(report, path):
    """Draw ``report`` (:func:`render_png`) into ``path``, atomically (temporary file, rename)."""
    write_bytes_atomic(path, render_png(report))
