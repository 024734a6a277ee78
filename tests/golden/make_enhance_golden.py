#!/usr/bin/env python
"""Regenerate ``enhance_roomtone.json``: the shipped ``roomtone`` denoiser's figures on the fixed
synthetic noisy file of ``tests/test_enhance_net.py`` (``golden_noisy_voice``). Run after training
new weights; it records the versions it ran with.

    PYTHONPATH=tests python tests/golden/make_enhance_golden.py

(``PYTHONPATH=tests``: it reads the golden input and figures from ``tests/test_enhance_net.py``, which
imports the tests' signal helpers.)
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    import hashlib

    import flax
    import jax
    import numpy as np

    import roomtone
    from roomtone.enhance.net import RoomtoneDenoiser, weights_path
    from test_enhance_net import golden_figures, golden_noisy_voice

    noisy, clean = golden_noisy_voice()
    figures = golden_figures(RoomtoneDenoiser(), noisy, clean)
    figures["weights_sha256"] = hashlib.sha256(Path(weights_path()).read_bytes()).hexdigest()
    figures["versions"] = {"roomtone": roomtone.__version__, "jax": jax.__version__, "flax": flax.__version__,
                           "numpy": np.__version__}
    (HERE / "enhance_roomtone.json").write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
