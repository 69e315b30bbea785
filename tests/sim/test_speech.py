"""gateway/sim/speech.py: speech-shaped synthesis, the paced SpeechTrack, the energy VAD."""

from __future__ import annotations

import fractions
import time

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from gateway.sim.speech import (
    SAMPLE_RATE,
    SpeechTrack,
    VoiceActivity,
    VoiceActivityDetector,
    synthesize,
    synthesize_utterance,
)

SENTENCE = "Tell me about a project you are proud of and why it mattered."


def windows_dbfs(samples: np.ndarray, ms: int = 10) -> np.ndarray:
    n = SAMPLE_RATE * ms // 1000
    usable = len(samples) - len(samples) % n
    rms = np.sqrt(np.mean(samples[:usable].astype(np.float64).reshape(-1, n) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-9) / 32768)


def test_duration_follows_the_number_of_words() -> None:
    five = synthesize("one two three four five", words_per_second=2.5)
    ten = synthesize("one two three four five six seven eight nine ten", words_per_second=2.5)
    assert len(five) / SAMPLE_RATE == pytest.approx(2.0, rel=0.05)
    assert len(ten) / SAMPLE_RATE == pytest.approx(4.0, rel=0.05)
    fast = synthesize("one two three four five", words_per_second=10)
    assert len(fast) / SAMPLE_RATE == pytest.approx(0.5, rel=0.05)


def test_synthesis_is_deterministic_for_a_seed() -> None:
    assert np.array_equal(synthesize(SENTENCE, seed=3), synthesize(SENTENCE, seed=3))
    assert not np.array_equal(synthesize(SENTENCE, seed=3), synthesize(SENTENCE, seed=4))
    assert synthesize(SENTENCE).dtype == np.int16


def test_it_sounds_like_speech_not_a_tone_or_silence() -> None:
    utterance = synthesize_utterance(SENTENCE, words_per_second=3)
    levels = windows_dbfs(utterance.samples)
    loud = levels > -30
    # voiced most of the time, with quiet gaps: at least one per word boundary
    assert 0.5 < loud.mean() < 0.95
    gaps = np.count_nonzero(loud[:-1] & ~loud[1:])
    assert gaps >= len(utterance.words) - 1
    # the amplitude follows an envelope rather than sitting at one level
    voiced = levels[loud]
    assert voiced.max() - np.percentile(voiced, 10) > 6
    # and the pitch moves: the strongest low harmonic differs between syllables
    n = SAMPLE_RATE * 40 // 1000
    peaks = set()
    for start in range(0, len(utterance.samples) - n, n):
        window = utterance.samples[start : start + n].astype(np.float64)
        if windows_dbfs(window, 40)[0] > -25:
            spectrum = np.abs(np.fft.rfft(window * np.hanning(n)))
            low = spectrum[: 400 * n // SAMPLE_RATE]  # below 400 Hz: the fundamental's range
            peaks.add(int(np.argmax(low)))
    assert len(peaks) >= 3


def test_word_ends_are_increasing_and_inside_the_audio() -> None:
    utterance = synthesize_utterance(SENTENCE, words_per_second=4)
    assert len(utterance.word_ends) == len(utterance.words) == len(SENTENCE.split())
    assert list(utterance.word_ends) == sorted(set(utterance.word_ends))
    assert 0 < utterance.word_ends[-1] <= len(utterance.samples)


def test_empty_text_is_empty_audio_and_bad_speeds_are_refused() -> None:
    assert len(synthesize("   ")) == 0
    with pytest.raises(ValueError, match="positive"):
        synthesize("hello", words_per_second=0)


async def test_speech_track_frames_are_20ms_48k_with_running_pts() -> None:
    track = SpeechTrack()
    frames = [await track.recv() for _ in range(5)]
    track.stop()
    for index, frame in enumerate(frames):
        assert (frame.samples, frame.sample_rate, frame.format.name) == (960, 48000, "s16")
        assert frame.layout.name == "mono"
        assert frame.pts == index * 960
        assert frame.time_base == fractions.Fraction(1, 48000)
        assert not frame.to_ndarray().any()  # idle: silence


async def test_speech_track_is_paced_in_real_time() -> None:
    track = SpeechTrack()
    started = time.monotonic()
    for _ in range(11):
        await track.recv()
    track.stop()
    assert time.monotonic() - started >= 10 * 0.020 - 0.005  # never faster than real time


async def test_say_completes_once_the_utterance_has_been_played() -> None:
    track = SpeechTrack(words_per_second=12)
    words: list[tuple[int, str]] = []
    done = track.say("Short answer for the test.", on_word=lambda i, w: words.append((i, w)))
    expected = synthesize_utterance("Short answer for the test.", words_per_second=12)
    frames_needed = -(-len(expected.samples) // 960)
    played = []
    while not done.done():
        played.append((await track.recv()).to_ndarray().reshape(-1))
        assert len(played) <= frames_needed
    assert len(played) == frames_needed
    audio = np.concatenate(played)
    assert np.array_equal(audio[: len(expected.samples)], expected.samples)
    assert words == list(enumerate("Short answer for the test.".split()))
    assert not (await track.recv()).to_ndarray().any()  # back to silence
    track.stop()


async def test_stop_cancels_what_was_not_played() -> None:
    track = SpeechTrack()
    pending = track.say("never heard")
    track.stop()
    assert pending.cancelled()
    assert track.say("after stop").cancelled()
    with pytest.raises(MediaStreamError):
        await track.recv()


def padded(speech: np.ndarray, before_ms: int, after_ms: int) -> np.ndarray:
    def silence(ms: int) -> np.ndarray:
        return np.zeros(SAMPLE_RATE * ms // 1000, dtype=np.int16)

    return np.concatenate([silence(before_ms), speech, silence(after_ms)])


def feed_in_frames(vad: VoiceActivityDetector, samples: np.ndarray) -> list[VoiceActivity]:
    events = []
    for start in range(0, len(samples), 960):
        events += vad.feed(samples[start : start + 960])
    return events


def test_vad_reports_one_turn_with_its_offsets() -> None:
    speech = synthesize(SENTENCE, words_per_second=4)
    events = feed_in_frames(VoiceActivityDetector(hangover_ms=300), padded(speech, 500, 600))
    assert [e.kind for e in events] == ["speech_started", "speech_stopped"]
    speech_ms = len(speech) * 1000 // SAMPLE_RATE
    assert 500 <= events[0].audio_ms <= 530
    assert 500 + speech_ms - 150 <= events[1].audio_ms <= 500 + speech_ms


def test_vad_ignores_silence_and_clicks_and_bridges_short_pauses() -> None:
    vad = VoiceActivityDetector(onset_ms=40, hangover_ms=300)
    assert feed_in_frames(vad, np.zeros(SAMPLE_RATE, dtype=np.int16)) == []
    click = np.full(SAMPLE_RATE * 20 // 1000, 20000, dtype=np.int16)
    assert feed_in_frames(vad, padded(click, 100, 100)) == []
    word = synthesize("word after word after word", words_per_second=4)
    two_pauses = np.concatenate([word, padded(word, 200, 0), padded(word, 500, 400)])
    kinds = [e.kind for e in feed_in_frames(vad, two_pauses)]
    assert kinds == ["speech_started", "speech_stopped"] * 2  # 200 ms bridged, 500 ms not


def test_vad_takes_decoded_stereo_frames_like_mono_samples() -> None:
    samples = padded(synthesize(SENTENCE, words_per_second=5), 300, 400)
    mono = feed_in_frames(VoiceActivityDetector(), samples)
    stereo_vad = VoiceActivityDetector()
    stereo_events = []
    for start in range(0, len(samples) - 959, 960):
        chunk = samples[start : start + 960]
        interleaved = np.repeat(chunk, 2).reshape(1, -1)  # what aiortc's Opus decoder outputs
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        stereo_events += stereo_vad.feed(frame)
    assert stereo_events == mono and len(mono) == 2


def test_vad_refuses_frames_at_another_rate() -> None:
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 160), np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    with pytest.raises(ValueError, match="48000 Hz"):
        VoiceActivityDetector().feed(frame)


async def test_say_from_many_tasks_plays_in_order() -> None:
    track = SpeechTrack(words_per_second=20)
    first, second = track.say("first line"), track.say("second line")
    while not second.done():
        await track.recv()
        assert not second.done() or first.done()
    assert first.done() and second.done()
    track.stop()
