"""The speakers job (issue 28): the separator's PIT loss, the assembly of speaker tracks from the
model's voices and the turns, the job's invariants (tracks and residual sum to the input, same
rate, length and channels), its file set and its CLI. Signals are synthesized; the GE2E encoder's
own tests are in test_speaker_encoder.py, the turn finding's in test_diarize.py."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from roomtone.audio import read_audio, write_audio
from roomtone.errors import InvalidAudioError, PresetError
from roomtone.separate import voices
from roomtone.separate.rttm import read_rttm
from roomtone.testing import vowel


def talk(sample_rate, seconds=6.0, overlap_s=0.0):
    """Two synthetic talkers taking turns: A (110 Hz) for the first half, B (230 Hz, formants 1.3x
    higher) for the second,
    ``overlap_s`` of both in the middle, 0.3 s of silence at each end. Returns (mix (samples,),
    sources (2, samples))."""
    n = int(seconds * sample_rate)
    half = n // 2
    edge = int(0.3 * sample_rate)
    ov = int(overlap_s * sample_rate) // 2
    a = np.zeros(n, np.float32)
    b = np.zeros(n, np.float32)
    a[edge:half + ov] = vowel((half + ov - edge) / sample_rate, sample_rate, f0=110.0, seed=1)[0][:half + ov - edge]
    length = n - edge - half + ov
    # B's vocal tract is shorter: its vowel made at a rate 1.3x lower and played at this one, so its
    # formants sit 1.3x higher (780, 1560, 3250 Hz), as a child's or many women's do, not only its pitch
    b[half - ov:n - edge] = vowel(length / sample_rate * 1.3, sample_rate / 1.3, f0=230.0 / 1.3, seed=2)[0][:length]
    return a + b, np.stack([a, b])


# ------------------------------------------------------------------ the training loss

def test_pit_loss_is_invariant_to_the_order_of_the_outputs():
    from roomtone.separate.training.speakers import pit_si_sdr, si_sdr

    rng = np.random.default_rng(0)
    targets = rng.standard_normal((2, 3, 800)).astype(np.float32)
    estimates = targets + 0.1 * rng.standard_normal(targets.shape).astype(np.float32)
    order = [2, 0, 1]
    best, index = pit_si_sdr(estimates, targets)
    best_permuted, index_permuted = pit_si_sdr(estimates[:, order], targets)
    np.testing.assert_allclose(np.asarray(best), np.asarray(best_permuted), rtol=1e-5)
    direct = np.asarray(si_sdr(estimates, targets)).mean(axis=-1)
    np.testing.assert_allclose(np.asarray(best), direct, rtol=1e-5)  # the right order is the best one
    assert np.all(np.asarray(index) == 0) and np.all(np.asarray(index_permuted) != 0)
    # a wrong order scores far worse
    wrong = np.asarray(si_sdr(estimates[:, order], targets)).mean(axis=-1)
    assert np.all(wrong < np.asarray(best) - 20.0)


def test_training_mixtures_hold_their_targets():
    from roomtone.separate.training.speakers import mixture

    rng = np.random.default_rng(1)
    speakers = {f"s{k}": [vowel(3.0, 16000, f0=100.0 + 40 * k, seed=k)[0]] for k in range(4)}
    pool = {"speech": [(k, v[0]) for k, v in speakers.items()], "noise": []}
    for _ in range(5):
        mix, targets = mixture(rng, speakers, pool, [], 16000, 2)
        assert mix.shape == (16000,) and targets.shape == (2, 16000)
        assert np.abs(mix).max() <= 0.99 + 1e-6
        assert np.all(np.sqrt(np.mean(targets ** 2, axis=1)) > 0)


# ------------------------------------------------------------------ assembly

def test_solo_frames_go_to_the_speaker_who_talks_whatever_the_voice_order():
    n = 1000
    a, b = np.ones(n, np.float32), 2.0 * np.ones(n, np.float32)
    gates = np.zeros((2, n), np.float32)
    gates[0, :400] = 1.0  # speaker 0 alone
    gates[1, 600:] = 1.0  # speaker 1 alone
    gates[:, 400:600] = 1.0  # both
    for voices_in in (np.stack([a, b]), np.stack([b, a])):
        out = voices.assign_segment(voices_in, gates)
        np.testing.assert_allclose(out.sum(axis=0), voices_in.sum(axis=0), rtol=1e-6)
        np.testing.assert_allclose(out[0, :400], 3.0)  # alone: both voices
        np.testing.assert_allclose(out[1, :400], 0.0)
        np.testing.assert_allclose(out[1, 600:], 3.0)
    # in the overlap the voice order follows the solo frames: voice a held speaker 0's solo energy?
    # (here both voices are flat, so the tie keeps the given order)
    sep = np.stack([np.r_[np.ones(600), np.zeros(400)], np.r_[np.zeros(400), np.ones(600)]]).astype(np.float32)
    out = voices.assign_segment(sep[::-1].copy(), gates)
    np.testing.assert_allclose(out[0, 400:600], 1.0)  # speaker 0 took the voice that holds its solo frames
    np.testing.assert_allclose(out[1, 400:600], 1.0)


def test_a_third_speaker_takes_its_solo_frames():
    n = 900
    v = np.stack([np.ones(n), np.ones(n)]).astype(np.float32)
    gates = np.zeros((3, n), np.float32)
    gates[0, :300] = gates[1, 300:600] = gates[2, 600:] = 1.0
    gates[0, 300:400] = 1.0  # 0 and 1 overlap a while
    out = voices.assign_segment(v, gates)
    np.testing.assert_allclose(out.sum(axis=0), 2.0, rtol=1e-6)
    np.testing.assert_allclose(out[2, 600:], 2.0)
    np.testing.assert_allclose(out[:2, 600:], 0.0)


def fake_separator(block):
    """Two 'voices' (0.5 and 0.3 of the input) and a residual (0.2): sums to the input."""
    return np.stack([0.5 * block, 0.3 * block, 0.2 * block], axis=1)


def test_channel_assembly_sums_to_the_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(16000 * 5).astype(np.float32) * 0.1
    activity = np.zeros((2, 500), bool)
    activity[0, :260] = True
    activity[1, 240:] = True
    tracks, residual = voices.separate_channel(fake_separator, x, activity, segment=32000, overlap=8000)
    np.testing.assert_allclose(tracks.sum(axis=0) + residual, x, atol=1e-6)
    np.testing.assert_allclose(residual, 0.2 * x, atol=1e-6)
    # speaker 1 holds nothing where only speaker 0 talks (away from the 20 ms gate edge)
    assert np.abs(tracks[1, :int(2.3 * 16000)]).max() < 1e-6


def test_activity_matrix_from_turns():
    from roomtone.separate.diarize import Turn

    turns = [Turn(0.0, 1.0, "speaker_1"), Turn(0.5, 1.0, "speaker_2")]
    act = voices.activity_matrix(turns, ["speaker_1", "speaker_2"], 200)
    assert act[0, :100].all() and not act[0, 100:].any()
    assert act[1, 50:150].all() and not act[1, :50].any() and not act[1, 150:].any()


def test_mel_stats_embeddings_tell_two_voices_apart():
    x, _ = talk(16000, seconds=8.0)
    starts, emb = voices.MelStatsEncoder().embed_windows(x, 16000)
    assert emb.shape[0] == starts.size and emb.shape[1] == voices.DIMENSIONS
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    first = emb[(starts > 0.5) & (starts < 2.0)]
    second = emb[(starts > 4.5) & (starts < 6.0)]
    within = float(np.mean(first @ first.T))
    between = float(np.mean(first @ second.T))
    assert within > between + 0.5


# ------------------------------------------------------------------ the job


@pytest.fixture(scope="module")
def separator():
    from roomtone.separate.speakers_net import SpeakerSeparator

    return SpeakerSeparator()


@pytest.mark.parametrize("sample_rate,channels", [(8000, 1), (16000, 1), (44100, 2), (48000, 1)])
def test_tracks_and_residual_sum_to_the_input(separator, sample_rate, channels):
    x, _ = talk(sample_rate, seconds=4.0, overlap_s=0.6)
    audio = np.stack([x, 0.5 * x][:channels])
    result = voices.speakers(audio, sample_rate, n=2, separator=separator, embedder=voices.MelStatsEncoder())
    tracks, turns, residual, report = result
    assert tracks.shape == (2, channels, audio.shape[1]) and residual.shape == audio.shape
    error = np.abs(tracks.sum(axis=0) + residual - audio).max()
    assert error < 1e-4 * np.abs(audio).max()  # float32 rounding of the STFT and resampler paths
    assert report["speakers"] == 2 and report["names"] == ["speaker_1", "speaker_2"]
    assert all(t.speaker in report["names"] for t in turns)


def test_silence_and_bad_options(separator):
    silent = np.zeros((1, 16000 * 2), np.float32)
    tracks, turns, residual, report = voices.speakers(silent, 16000, separator=separator,
                                                      embedder=voices.MelStatsEncoder())
    assert turns == [] and report["speakers"] == 1 and not np.any(tracks) and not np.any(residual)
    with pytest.raises(PresetError):
        voices.speakers(silent, 16000, n=7, separator=separator, embedder=voices.MelStatsEncoder())
    with pytest.raises(InvalidAudioError):
        voices.speakers(np.zeros((1, 6000), np.float32), 6000, separator=separator)


def test_file_set_and_rttm(tmp_path, separator):
    x, _ = talk(48000, seconds=4.0)
    source = tmp_path / "talk.wav"
    write_audio(str(source), x[None], 48000, bit_depth="24")
    report = voices.speakers_file(str(source), str(tmp_path / "out"), n=2, separator=separator,
                                  embedder=voices.MelStatsEncoder())
    folder = tmp_path / "out" / "talk"
    assert sorted(os.listdir(folder)) == ["residual.wav", "speaker_1.wav", "speaker_2.wav", "turns.rttm"]
    total = None
    for name in ("speaker_1", "speaker_2", "residual"):
        y, rate, _ = read_audio(str(folder / f"{name}.wav"))
        assert rate == 48000 and y.shape == (1, x.size)
        total = y if total is None else total + y
    original, _, _ = read_audio(str(source))
    assert np.abs(total - original).max() < 1e-5  # float output: the set sums to the input
    turns = read_rttm(str(folder / "turns.rttm"))["talk"]
    assert {t.speaker for t in turns} <= {"speaker_1", "speaker_2"} and turns
    assert set(report["outputs"]) == {"speaker_1", "speaker_2", "residual", "turns.rttm"}


def test_cli_speakers(tmp_path):
    from roomtone.separate.cli import main

    x, _ = talk(16000, seconds=3.0)
    source = tmp_path / "call.wav"
    write_audio(str(source), x[None], 16000, bit_depth="24")
    runner = CliRunner()
    result = runner.invoke(main, [str(source), "-o", str(tmp_path / "v"), "--speakers", "2", "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["speakers"] == 2 and (tmp_path / "v" / "call" / "turns.rttm").exists()
    bad = runner.invoke(main, [str(source), "-o", str(tmp_path / "w"), "--speakers", "9"])
    assert bad.exit_code == 2 and "--speakers 9" in bad.output
    clash = runner.invoke(main, [str(source), "-o", str(tmp_path / "w"), "--speakers", "auto", "--two-stems", "vocals"])
    assert clash.exit_code == 2
    assert not (tmp_path / "w" / "call").exists()


def test_per_speaker_leveling_brings_a_quiet_guest_to_the_host(monkeypatch):
    from roomtone.enhance.api import enhance, level_speakers
    from roomtone.meter import integrated_loudness

    # the same embedding with or without the GE2E wheel (synthetic vowels are not what GE2E learned)
    monkeypatch.setattr(voices, "load_embedder", lambda path=None: voices.MelStatsEncoder())

    rate = 16000
    x, sources = talk(rate, seconds=8.0)
    gap = int(0.75 * rate)  # a pause between the two (windows across a change of speaker mix the two)
    sources = np.concatenate([sources[:, :4 * rate], np.zeros((2, gap), np.float32), sources[:, 4 * rate:]], axis=1)
    quiet = (sources[0] + sources[1] * np.float32(10 ** (-18 / 20)))[None]  # the guest 18 dB under the host
    half = 4 * rate + gap // 2

    def spread(y):
        return abs(integrated_loudness(y[:, :half], rate) - integrated_loudness(y[:, half:], rate))

    assert spread(quiet) > 16.0
    leveled, report = level_speakers(quiet, rate)
    assert report["speakers"] == 2 and spread(leveled) < 1.5
    assert max(row["gain_db"] for row in report["levels"].values()) > 15.0
    out, full = enhance(quiet, rate, preset="podcast", model="classic", per_speaker=True)
    plain, _ = enhance(quiet, rate, preset="podcast", model="classic")
    assert spread(out) < 2.0 < spread(plain) - 5.0
    assert full["per_speaker"]["speakers"] == 2 and out.shape == quiet.shape


def test_blocks_cross_fade_into_the_same_sum(monkeypatch):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2, 16000 * 7)) * 0.05).astype(np.float32)
    activity = np.zeros((2, 700), bool)
    activity[0, :400] = True
    activity[1, 350:] = True
    pieces = []

    def sink(start, stop, parts):
        pieces.append((start, stop, parts.copy()))

    voices.split_blocks(lambda a, b: x[:, a:b], x.shape[1], 16000, activity, fake_separator, sink, block_s=2.0,
                        overlap_s=0.5)
    assert [p[0] for p in pieces] == sorted(p[0] for p in pieces) and pieces[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:])) and pieces[-1][1] == x.shape[1]
    whole = np.concatenate([p[2] for p in pieces], axis=2)
    assert whole.shape == (3, 2, x.shape[1])
    np.testing.assert_allclose(whole.sum(axis=0), x, atol=1e-6)
    np.testing.assert_allclose(whole[-1], 0.2 * x, atol=1e-6)  # the residual, seamless across the blocks


def test_stream_write_commits_or_leaves_nothing(tmp_path):
    from roomtone.audio import StreamWrite

    rng = np.random.default_rng(5)
    blocks = [(rng.standard_normal((2, 1000)) * 0.1).astype(np.float32) for _ in range(3)]
    blocks[1][0, 10] = 1.5  # over full scale: clamped and counted at 24 bits
    writer = StreamWrite(tmp_path / "a.wav", 48000, 2, "24")
    for b in blocks:
        writer.write(b)
    writer.commit()
    y, rate, _ = read_audio(str(tmp_path / "a.wav"))
    assert rate == 48000 and y.shape == (2, 3000) and writer.clipped == 1
    assert np.abs(y - np.clip(np.concatenate(blocks, axis=1), -1, 1)).max() < 1e-5
    dropped = StreamWrite(tmp_path / "b.wav", 48000, 2, "32f")
    dropped.write(blocks[0])
    dropped.discard()
    assert sorted(os.listdir(tmp_path)) == ["a.wav"]
