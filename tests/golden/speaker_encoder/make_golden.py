"""Writes reference.npz: Resemblyzer 0.1.4's own embeddings, the golden figures of
tests/test_speaker_encoder.py. Runs OUTSIDE the project's environment, in a throwaway venv that has
torch, librosa, soundfile and the Resemblyzer wheel (see README.md here); the project itself never
imports torch or resemblyzer.

    /tmp/ge2e_ref/bin/python tests/golden/speaker_encoder/make_golden.py ../shared/data/speech/speech

What it stores (about 10 KB):

- ``names``, ``samples``, ``sha256``: the LibriSpeech files (16 kHz) and their sample counts/hashes;
- ``embeddings`` (n, 256): ``VoiceEncoder.embed_utterance(normalize_volume(wav, -30 dBFS,
  increase_only=True))`` per file: Resemblyzer's preprocessing without the resampling (already
  16 kHz) and without its webrtcvad silence trimming, which roomtone leaves out;
- ``mel_excerpt`` (10, 40): ``wav_to_mel_spectrogram`` frames 100..109 of the first file (same volume
  normalisation);
- ``synthetic_embeddings`` (2, 256): ``VoiceEncoder.forward`` on the formula mel of
  :func:`synthetic_mel` (no audio needed to check it);
- ``versions``: torch, librosa, numpy, resemblyzer, and the pretrained.pt sha256.
"""

import hashlib
import json
import os
import sys

import numpy as np

FILES = (
    "resemblyzer__librispeech_test-other__1688__1688-142285-0003.flac",
    "resemblyzer__librispeech_test-other__1688__1688-142285-0009.flac",
    "resemblyzer__librispeech_test-other__1998__1998-15444-0005.flac",
    "resemblyzer__librispeech_test-other__1998__1998-15444-0008.flac",
    "resemblyzer__librispeech_test-other__2033__2033-164914-0004.flac",
)


def synthetic_mel():
    """(2, 160, 40) float32: a deterministic positive 'mel power' pattern (same formula in the test)."""
    b, t, m = np.meshgrid(np.arange(2), np.arange(160), np.arange(40), indexing="ij")
    return (0.05 * (1.0 + np.sin(0.1 * (b + 1) * t + 0.7 * m))).astype(np.float32)


def main(folder, out):
    import librosa
    import soundfile
    import torch
    import resemblyzer
    from resemblyzer import VoiceEncoder, normalize_volume, wav_to_mel_spectrogram

    encoder = VoiceEncoder("cpu", verbose=False)
    embeddings, samples, hashes, mel_excerpt = [], [], [], None
    for name in FILES:
        path = os.path.join(folder, name)
        with open(path, "rb") as handle:
            hashes.append(hashlib.sha256(handle.read()).hexdigest())
        wav, rate = soundfile.read(path, dtype="float32")
        assert rate == 16000 and wav.ndim == 1
        samples.append(len(wav))
        wav = normalize_volume(wav, -30, increase_only=True)
        embeddings.append(encoder.embed_utterance(wav))
        if mel_excerpt is None:
            mel_excerpt = wav_to_mel_spectrogram(wav)[100:110]
    with torch.no_grad():
        synthetic = encoder(torch.from_numpy(synthetic_mel())).numpy()
    weights = os.path.join(os.path.dirname(resemblyzer.__file__), "pretrained.pt")
    with open(weights, "rb") as handle:
        weights_sha = hashlib.sha256(handle.read()).hexdigest()
    versions = {"torch": torch.__version__, "librosa": librosa.__version__, "numpy": np.__version__,
                "resemblyzer": "0.1.4", "python": sys.version.split()[0], "pretrained.pt sha256": weights_sha}
    np.savez_compressed(out, names=np.array(FILES), samples=np.array(samples), sha256=np.array(hashes),
                        embeddings=np.array(embeddings, np.float32), mel_excerpt=mel_excerpt.astype(np.float32),
                        synthetic_embeddings=synthetic.astype(np.float32), versions=json.dumps(versions))
    print(json.dumps(versions, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference.npz"))
