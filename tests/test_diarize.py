"""Voice activity, speaker turns, RTTM and the diarization error rate, on synthesized signals only.

- VAD: phrases of synthetic vowels (a pulse train with a wandering f0 through three formant
  resonators) in pink noise with white-noise bursts between them, at 8, 16, 44.1 and 48 kHz: the
  known spans are found, the bursts and noise alone are not speech, the decision ignores the level;
  the noise-floor kernel against its numpy oracle, blocks against the whole.
- Clustering: random unit centroids per speaker plus noise: the count 1..6 (both criteria) and the
  labels are recovered; outlier windows do not count; ``n=int`` fixes the count.
- Turns: a made-up conversation of windows gives its turns; a second-speaker activity makes them
  overlap; short runs are smoothed away.
- RTTM round trip and malformed lines; DER against hand-computed cases and a brute-force mapping.
"""

import itertools
import math

import numpy as np
import pytest
from scipy.signal import lfilter

from roomtone.errors import InvalidAudioError, RoomtoneError
from roomtone.separate import diarize as dz
from roomtone.separate import vad
from roomtone.separate.diarize import Turn, diarization_error_rate, speaker_times
from roomtone.separate.rttm import RttmError, parse_rttm, read_rttm, write_rttm

SPANS_S = [(1.0, 2.6), (4.0, 5.2), (7.5, 9.9), (11.5, 12.4)]
BURSTS_S = [(3.0, 3.4), (6.2, 6.5), (10.5, 10.8)]
SCENE_S = 14.0


def pink(seconds, sample_rate, rms, seed):
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return x * rms / np.sqrt(np.mean(x ** 2))


def syllable(seconds, sample_rate, f0_hz, rng, formants_hz=(700.0, 1220.0, 2600.0)):
    """A vowel: a glottal pulse train (f0 wandering +-15 %) through formant resonators, unit RMS."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = f0_hz * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)))
    pulses = np.diff(np.floor(np.cumsum(f0) / sample_rate), prepend=0.0)
    x = lfilter([1.0], [1.0, -0.95], pulses)  # glottal spectral tilt
    for fc, bandwidth in zip(formants_hz, (80.0, 100.0, 150.0)):
        r = np.exp(-np.pi * bandwidth / sample_rate)
        x = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * fc / sample_rate), r * r], x)
    x *= np.sin(np.pi * np.arange(n) / n) ** 0.5
    return x / np.sqrt(np.mean(x ** 2) + 1e-30)


def scene(sample_rate, snr_db=10.0, noise_rms=0.01, seed=0):
    """Phrases of syllables over ``SPANS_S`` and white-noise bursts over ``BURSTS_S``, both
    ``snr_db`` above the pink-noise background."""
    rng = np.random.default_rng(seed)
    x = pink(SCENE_S, sample_rate, noise_rms, seed + 1)
    level = noise_rms * 10 ** (snr_db / 20)
    for a, b in SPANS_S:
        pos, f0 = a, rng.uniform(90, 220)
        while pos < b - 0.05:
            length = min(rng.uniform(0.15, 0.3), b - pos)
            v = syllable(length, sample_rate, f0, rng)
            i = int(round(pos * sample_rate))
            x[i:i + v.size] += level * rng.uniform(0.7, 1.0) * v
            pos += length
    for a, b in BURSTS_S:
        i, j = int(a * sample_rate), int(b * sample_rate)
        x[i:j] += level * rng.standard_normal(j - i)
    return x.astype(np.float32)


def truth_mask(spans, frames, frame_s=0.01):
    mask = np.zeros(frames, bool)
    for a, b in spans:
        mask[int(round(a / frame_s)):int(round(b / frame_s))] = True
    return mask


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100, 48000])
def test_vad_finds_the_speech_and_not_the_bursts(sample_rate):
    frame_s, speech = vad.voice_activity(scene(sample_rate), sample_rate)
    assert frame_s == 0.01 and speech.size == vad.frame_count(int(SCENE_S * sample_rate), sample_rate) == 1400
    truth = truth_mask(SPANS_S, speech.size)
    assert np.mean(~speech[truth]) < 0.03  # missed speech
    assert not speech[truth_mask(BURSTS_S, speech.size)].any()  # loud broadband bursts are no speech
    segments = vad.speech_segments(scene(sample_rate), sample_rate)
    assert len(segments) == len(SPANS_S)
    for (a, b), (start, end) in zip(SPANS_S, segments):
        assert abs(start - a) <= 0.05 and b - 0.1 <= end <= b + 0.2  # the hangover holds 150 ms


def test_vad_ignores_level_and_hears_low_snr():
    x = scene(16000)
    _, reference = vad.voice_activity(x, 16000)
    for gain in (0.003, 30.0):
        _, speech = vad.voice_activity(x * gain, 16000)
        assert np.mean(speech == reference) > 0.995
    _, quiet = vad.voice_activity(scene(16000, snr_db=5.0), 16000)
    assert np.mean(quiet[truth_mask(SPANS_S, quiet.size)]) > 0.9


@pytest.mark.parametrize("kind", ["pink", "white", "tone", "silence"])
def test_noise_alone_is_no_speech(kind):
    rate = 16000
    n = 10 * rate
    rng = np.random.default_rng(5)
    x = {"pink": pink(10, rate, 0.05, 3), "white": 0.05 * rng.standard_normal(n),
         "tone": 0.3 * np.sin(2 * np.pi * 1000 * np.arange(n) / rate) + pink(10, rate, 0.01, 4),
         "silence": np.zeros(n)}[kind]
    _, speech = vad.voice_activity(x, rate)
    assert not speech.any()
    if kind in ("pink", "white"):  # the floor's bias: noise alone sits near 0 dB over its floor
        snr_db, harmonicity = vad.frame_features(x, rate)
        assert abs(np.median(snr_db)) < 1.0 and np.median(harmonicity) < 0.25


def test_empty_short_and_bad_input():
    assert vad.voice_activity(np.zeros(0, np.float32), 16000)[1].size == 0
    assert vad.voice_activity(np.zeros(1, np.float32), 48000)[1].size == 1
    assert vad.speech_segments(np.zeros(800, np.float32), 8000) == []
    with pytest.raises(InvalidAudioError):
        vad.voice_activity(np.zeros(8000), 4000)  # under 8 kHz
    with pytest.raises(InvalidAudioError, match="offset_probability"):
        vad.voice_activity(np.zeros(8000), 8000, onset_probability=0.2, offset_probability=0.5)
    with pytest.raises(InvalidAudioError, match="min_speech_ms"):
        vad.voice_activity(np.zeros(8000), 8000, min_speech_ms=-1)


def test_blocks_give_the_whole(monkeypatch):
    x = scene(8000)
    whole = vad.frame_features(x, 8000)
    monkeypatch.setattr(vad, "BLOCK_FRAMES", 317)
    blocks = vad.frame_features(x, 8000)
    for a, b in zip(whole, blocks):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_noise_floor_kernel_matches_its_oracle():
    rng = np.random.default_rng(2)
    power = rng.exponential(size=(257, 4))
    width, alpha, bias = 31, 0.8, 1.7
    got = vad._noise_floor(power, alpha, width, bias, 0.0, np.empty_like(power))
    settle = int(2 / (1 - alpha)) + 1
    s, previous = np.empty_like(power), power[:settle].mean(axis=0)
    for t in range(power.shape[0]):
        previous = s[t] = alpha * previous + (1 - alpha) * power[t]
    h = width // 2
    oracle = np.array([s[max(0, t - h):t + h + 1].min(axis=0) for t in range(power.shape[0])]) * bias
    np.testing.assert_allclose(got, oracle, rtol=1e-12)


def test_hysteresis_and_tidying():
    p = np.array([0.0, 0.7, 0.5, 0.35, 0.2, 0.5, 0.65, 0.1])
    np.testing.assert_array_equal(vad._hysteresis(p, 0.6, 0.3, np.zeros(p.size, bool)),
                                  [0, 1, 1, 1, 0, 0, 1, 0])
    speech = np.zeros(100, bool)
    speech[10:30] = speech[34:50] = True  # a 4-frame gap
    speech[80:83] = True  # a 3-frame blip
    tidy = vad._tidy(speech, 2, 5, 10)
    np.testing.assert_array_equal(vad.runs(tidy), ([10], [52]))


# --- clustering --------------------------------------------------------------------------------

def embeddings(speakers, windows_per_speaker=50, noise=1.0, seed=0, dim=256):
    """Unit vectors around random unit centroids (noise of norm about ``noise``), shuffled, with
    uneven shares. Returns (embeddings (n, dim), labels (n,))."""
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((speakers, dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    shares = rng.uniform(0.5, 1.5, speakers)
    counts = np.maximum(8, (windows_per_speaker * speakers * shares / shares.sum()).astype(int))
    labels = rng.permutation(np.repeat(np.arange(speakers), counts))
    x = centroids[labels] + noise * rng.standard_normal((labels.size, dim)) / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


@pytest.mark.parametrize("count_method", ["threshold", "eigengap"])
@pytest.mark.parametrize("speakers", range(1, 7))
def test_speaker_count_is_recovered(speakers, count_method):
    for seed in range(2):
        x, _ = embeddings(speakers, seed=10 * speakers + seed)
        assert dz.speaker_count(x, count_method=count_method) == speakers


def test_count_threshold_decides():
    x, _ = embeddings(3, seed=4)
    assert dz.speaker_count(x, distance_threshold=1.9) == 1  # everything closer than that: one speaker
    assert dz.speaker_count(x, distance_threshold=0.05, min_cluster_share=0.0) == dz.MAX_SPEAKERS  # capped
    assert dz.speaker_count(x, distance_threshold=0.05) == 1  # nothing merges: all singletons, outliers


def same_partition(a, b):
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


def test_labels_are_recovered_and_outliers_do_not_count():
    x, labels = embeddings(4, seed=7)
    got = dz.cluster_embeddings(x)
    assert same_partition(got, labels)
    assert np.bincount(got)[0] == np.bincount(got).max()  # speaker 0 has the most windows
    rng = np.random.default_rng(8)
    outliers = rng.standard_normal((3, x.shape[1]))
    assert dz.speaker_count(np.vstack([x, outliers])) == 4
    assert dz.cluster_embeddings(x, n=2).max() == 1 and dz.cluster_embeddings(x, n=4).max() == 3
    with pytest.raises(dz.DiarizationInputError, match="n="):
        dz.cluster_embeddings(x, n=0)


# --- turns --------------------------------------------------------------------------------------

CONVERSATION = [Turn(0.0, 4.0, "A"), Turn(4.0, 3.0, "B"), Turn(7.0, 3.0, "A"), Turn(11.0, 3.0, "C")]


def conversation_windows(turns=CONVERSATION, window_s=1.5, hop_s=0.25, noise=0.9, seed=0):
    """Window embeddings of a conversation: each window near the centroid of the speaker covering
    most of it (random unit vectors if none). Returns (starts_s, embeddings, speech (frames,))."""
    rng = np.random.default_rng(seed)
    end_s = max(t.end_s for t in turns)
    names = sorted({t.speaker for t in turns})
    centroids = rng.standard_normal((len(names), 64))
    starts = np.arange(0.0, end_s - window_s + 1e-9, hop_s)
    frames = int(round(end_s / 0.01))
    active = np.stack([truth_mask([(t.start_s, t.end_s) for t in turns if t.speaker == s], frames) for s in names])
    vectors = []
    for start in starts:
        a, b = int(round(start / 0.01)), int(round((start + window_s) / 0.01))
        cover = active[:, a:b].sum(axis=1)
        centre = centroids[np.argmax(cover)] if cover.max() else rng.standard_normal(64)
        vectors.append(centre / np.linalg.norm(centre) + noise * rng.standard_normal(64) / 8)
    return starts, np.array(vectors), active.any(axis=0)


def test_turns_of_a_conversation():
    starts, x, speech = conversation_windows()
    turns = dz.diarize(x, starts, 1.5, speech)
    assert [t.speaker for t in turns] == ["speaker0", "speaker1", "speaker0", "speaker2"]
    score = diarization_error_rate(CONVERSATION, turns)
    assert score["der"] < 0.03 and score["scored_s"] == pytest.approx(11.0, abs=0.02)  # 13 s less the collars
    # (0.25 s at 0, 10, 11 and 14 s where one side is silence, 0.5 s at 4 and 7 s)
    assert dz.diarize(x, starts, 1.5, speech, n=2)[-1].speaker in ("speaker0", "speaker1")
    assert dz.diarize(x, starts, 1.5, np.zeros_like(speech)) == []
    with pytest.raises(dz.DiarizationInputError, match="window starts"):
        dz.diarize(x, starts[:-1], 1.5, speech)


def test_second_speaker_activity_makes_turns_overlap():
    starts, x, speech = conversation_windows()
    second = np.zeros(speech.size)
    second[400:560] = 0.9  # 4.0-5.6 s, from A's turn into B's
    turns = dz.diarize(x, starts, 1.5, speech, second_speaker=second)
    times = speaker_times(turns)
    assert times["overlap_s"] == pytest.approx(1.6, abs=1e-6)
    assert times["overlap_share"] == pytest.approx(1.6 / 13.0, abs=1e-6)
    assert Turn(0.0, 5.6, "speaker0") in turns  # A's first turn runs on through the overlap
    with pytest.raises(dz.DiarizationInputError, match="second_speaker"):
        dz.diarize(x, starts, 1.5, speech, second_speaker=second[:-1])


def test_short_runs_are_smoothed_away():
    label = np.array([0] * 50 + [1] * 10 + [0] * 30 + [-1] * 5 + [2] * 8)
    np.testing.assert_array_equal(dz._smooth_runs(label, 25), [0] * 90 + [-1] * 5 + [2] * 8)
    np.testing.assert_array_equal(dz._smooth_runs(label, 5), label)


def test_speaker_times_by_hand():
    turns = [Turn(0.0, 2.0, "a"), Turn(1.0, 2.0, "b"), Turn(1.5, 0.5, "a"), Turn(5.0, 1.0, "c")]
    times = speaker_times(turns)
    assert times["speech_s"] == {"a": 2.0, "b": 2.0, "c": 1.0}
    assert times["total_s"] == 4.0 and times["overlap_s"] == 1.0 and times["overlap_share"] == 0.25
    assert speaker_times([])["overlap_share"] == 0.0


# --- RTTM ---------------------------------------------------------------------------------------

def test_rttm_round_trip(tmp_path):
    turns = [Turn(0.0, 1.25, "alice"), Turn(1.0, 0.5, "bob"), Turn(3.123, 4.0, "alice")]
    path = tmp_path / "meeting.rttm"
    write_rttm(path, turns)
    lines = path.read_text().splitlines()
    assert lines[0] == "SPEAKER meeting 1 0.000 1.250 <NA> <NA> alice <NA> <NA>"
    assert read_rttm(path) == {"meeting": turns}
    write_rttm(path, turns[:1], file_id="other")
    assert read_rttm(path) == {"other": turns[:1]}


@pytest.mark.parametrize("line, message", [
    ("SPEAKER f 1 0.0 1.0 <NA> <NA>", "a SPEAKER line has 9 or 10 fields; got 7"),
    ("SPEAKER f 1 zero 1.0 <NA> <NA> s <NA> <NA>", "onset 'zero' is not a number"),
    ("SPEAKER f 1 0.0 -1.0 <NA> <NA> s <NA> <NA>", "duration '-1.0' must be"),
    ("SPEAKER f 1 nan 1.0 <NA> <NA> s <NA> <NA>", "onset 'nan' must be"),
    ("hello world", "expected an RTTM line"),
])
def test_rttm_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.rttm"
    path.write_text(";; a comment\nSPEAKER f 1 0.0 1.0 <NA> <NA> s <NA> <NA>\n\n" + line + "\n")
    with pytest.raises(RttmError, match=f"bad.rttm, line 4: {message}"):
        read_rttm(path)


def test_rttm_skips_other_types_and_refuses_bad_output(tmp_path):
    text = "SPKR-INFO f 1 <NA> <NA> <NA> unknown s <NA> <NA>\nSPEAKER f 1 2 1 <NA> <NA> s <NA>\n"
    assert parse_rttm(text) == {"f": [Turn(2.0, 1.0, "s")]}
    path = tmp_path / "out.rttm"
    with pytest.raises(RttmError, match="without spaces"):
        write_rttm(path, [Turn(0.0, 1.0, "two words")])
    assert not path.exists()
    with pytest.raises(RoomtoneError, match="missing.rttm: cannot read"):
        read_rttm(tmp_path / "missing.rttm")


# --- diarization error rate ---------------------------------------------------------------------

A10 = [Turn(0.0, 10.0, "A")]


@pytest.mark.parametrize("reference, hypothesis, collar_s, expected", [
    (A10, [Turn(0.0, 10.0, "x")], 0.0, dict(der=0.0, missed=0.0, false_alarm=0.0, confusion=0.0, scored_s=10.0)),
    (A10, [Turn(0.0, 8.0, "x")], 0.0, dict(der=0.2, missed=2.0, false_alarm=0.0, confusion=0.0, scored_s=10.0)),
    (A10, [Turn(0.0, 10.0, "x"), Turn(10.0, 2.0, "y")], 0.0, dict(der=0.2, missed=0.0, false_alarm=2.0,
                                                                  confusion=0.0, scored_s=10.0)),
    ([Turn(0.0, 5.0, "A"), Turn(5.0, 5.0, "B")], [Turn(0.0, 10.0, "x")], 0.0,
     dict(der=0.5, missed=0.0, false_alarm=0.0, confusion=5.0, scored_s=10.0)),
    # two reference speakers, hypothesis names swapped and one turn mislabelled: the mapping takes the best
    ([Turn(0.0, 4.0, "A"), Turn(4.0, 6.0, "B")], [Turn(0.0, 4.0, "q"), Turn(4.0, 3.0, "p"), Turn(7.0, 3.0, "q")],
     0.0, dict(der=0.3, missed=0.0, false_alarm=0.0, confusion=3.0, scored_s=10.0)),
    # overlap: a frame with two reference speakers counts twice
    ([Turn(0.0, 10.0, "A"), Turn(5.0, 5.0, "B")], [Turn(0.0, 10.0, "x")], 0.0,
     dict(der=1 / 3, missed=5.0, false_alarm=0.0, confusion=0.0, scored_s=15.0)),
    # collar: 0.25 s either side of each reference boundary is not scored
    (A10, [Turn(0.2, 9.6, "x")], 0.25, dict(der=0.0, missed=0.0, false_alarm=0.0, confusion=0.0, scored_s=9.5)),
    (A10, [Turn(0.0, 9.0, "x")], 0.25, dict(der=0.75 / 9.5, missed=0.75, false_alarm=0.0, confusion=0.0,
                                            scored_s=9.5)),
    ([], [Turn(0.0, 1.0, "x")], 0.25, dict(der=math.inf, missed=0.0, false_alarm=1.0, confusion=0.0, scored_s=0.0)),
])
def test_der_by_hand(reference, hypothesis, collar_s, expected):
    got = diarization_error_rate(reference, hypothesis, collar_s=collar_s)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_der_mapping_is_optimal():
    rng = np.random.default_rng(3)
    for _ in range(100):
        rows, cols = (int(v) for v in rng.integers(1, 6, 2))
        profit = rng.integers(0, 30, (rows, cols)).astype(float)
        small, large = sorted((rows, cols))
        table = profit if rows <= cols else profit.T
        best = max(sum(table[i, p[i]] for i in range(small)) for p in itertools.permutations(range(large), small))
        assert sum(profit[i, j] for i, j in dz._hungarian(profit)) == best


def test_refine_places_the_turn_change_at_the_dense_hop():
    """Re-segmentation: clusters from windows every 1 s, then windows every 0.1 s take the nearest
    centroid; the change of speaker at 5.45 s is placed within the dense hop, where the coarse
    windows put it at a whole second."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((2, 32))
    change_s, window_s, total_s = 5.45, 1.0, 10.0

    def windows(hop_s):
        starts = np.arange(0.0, total_s - window_s + 1e-9, hop_s)
        mids = starts + window_s / 2
        who = (mids >= change_s).astype(int)
        return starts, centres[who] + 0.05 * rng.standard_normal((starts.size, 32))

    speech = np.ones(int(total_s / 0.01), bool)
    coarse_s, coarse = windows(1.0)
    dense_s, dense = windows(0.1)
    plain = dz.diarize(coarse, coarse_s, window_s, speech, n=2, min_turn_ms=0.0)
    refined = dz.diarize(coarse, coarse_s, window_s, speech, n=2, min_turn_ms=0.0, refine=(dense_s, dense))

    def change(turns):
        first = min(turns, key=lambda t: t.start_s)
        return first.end_s

    assert abs(change(refined) - change_s) <= 0.1
    assert abs(change(plain) - change_s) >= 0.3
    with pytest.raises(dz.DiarizationInputError):
        dz.diarize(coarse, coarse_s, window_s, speech, n=2, refine=(dense_s[:-1], dense))
