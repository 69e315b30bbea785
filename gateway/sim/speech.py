"""Speech-like audio without a speech model: synthesis, a paced WebRTC track, and a voice detector.

The simulated interviewer and the headless candidates must exchange audio that behaves like
speech on the wire and to a voice-activity detector — bursts of voiced syllables with pitch and
an envelope, pauses between words, silence between turns — or the relay and the turn-taking
logic are never exercised the way a real conversation exercises them. A constant tone or
silence would hide bugs (no onset, no hangover, Opus compressing nothing). Nothing here needs
intelligibility, so a handful of harmonics shaped by two formants is enough, and it is cheap:
numpy only, utterances cached, 20 ms frames cut from precomputed buffers.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import re
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

SAMPLE_RATE = 48_000
FRAME_MS = 20

# (F1, F2) in Hz of a few vowels: enough variety that syllables do not sound (or encode) alike.
_VOWEL_FORMANTS = ((730, 1090), (270, 2290), (530, 1840), (570, 840), (300, 870), (660, 1720))
_VOWEL_GROUPS = re.compile(r"[aeiouy]+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Utterance:
    """Synthesized audio for one text, with where each word ends (to pace transcript deltas)."""

    text: str
    words: tuple[str, ...]
    samples: np.ndarray  # int16, mono, read-only
    sample_rate: int
    word_ends: tuple[int, ...]  # sample offset just past each word's voiced part

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def _syllable_count(word: str) -> int:
    return min(4, max(1, len(_VOWEL_GROUPS.findall(word))))


def _syllable(n: int, sample_rate: int, f0_start: float, f0_end: float, vowel: int) -> np.ndarray:
    """One voiced syllable: a pitch glide, harmonics weighted by two formants, a smooth envelope."""
    x = np.linspace(0.0, 1.0, n, endpoint=False)
    f0 = f0_start + (f0_end - f0_start) * x
    phase = 2.0 * np.pi * np.cumsum(f0) / sample_rate
    f1, f2 = _VOWEL_FORMANTS[vowel]
    out = np.zeros(n)
    for k in range(1, 13):
        fk = k * f0
        weight = (
            np.exp(-(((fk - f1) / 180.0) ** 2))
            + 0.6 * np.exp(-(((fk - f2) / 250.0) ** 2))
            + 0.08 / k
        )
        out += weight * np.sin(k * phase)
    return out * np.sin(np.pi * x) ** 0.6


@functools.lru_cache(maxsize=256)
def synthesize_utterance(
    text: str,
    *,
    sample_rate: int = SAMPLE_RATE,
    words_per_second: float = 3.0,
    pitch_hz: float = 140.0,
    seed: int = 0,
) -> Utterance:
    """Speech-shaped audio for ``text``: about ``1 / words_per_second`` seconds per word.

    Each word is 1-4 voiced syllables (by its vowel groups) followed by a short pause; the pitch
    drifts and glides per syllable. Deterministic for the same arguments (the seed is mixed with
    the text, so different sentences differ), and cached because interviews repeat their lines.
    """
    if words_per_second <= 0 or pitch_hz <= 0 or sample_rate <= 0:
        raise ValueError("words_per_second, pitch_hz and sample_rate must be positive")
    words = tuple(text.split())
    rng = np.random.default_rng([seed, zlib.crc32(text.encode())])
    pieces: list[np.ndarray] = []
    word_ends: list[int] = []
    total = 0
    word_len = sample_rate / words_per_second
    for index, word in enumerate(words):
        pause = int(word_len * rng.uniform(0.18, 0.3))
        syllables = _syllable_count(word)
        syllable_len = max(1, int((word_len - pause) / syllables))
        declination = 1.0 - 0.15 * index / max(1, len(words))
        for _ in range(syllables):
            f0 = pitch_hz * declination * rng.uniform(0.88, 1.12)
            glide = f0 * rng.uniform(0.9, 1.1)
            vowel = int(rng.integers(len(_VOWEL_FORMANTS)))
            pieces.append(_syllable(syllable_len, sample_rate, f0, glide, vowel))
            total += syllable_len
        word_ends.append(total)
        pieces.append(np.zeros(pause))
        total += pause
    audio = np.concatenate(pieces) if pieces else np.zeros(0)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = audio * (0.5 * 32767 / peak)  # peaks at -6 dBFS
    samples = audio.astype(np.int16)
    samples.flags.writeable = False
    return Utterance(text, words, samples, sample_rate, tuple(word_ends))


def synthesize(
    text: str,
    *,
    sample_rate: int = SAMPLE_RATE,
    words_per_second: float = 3.0,
    pitch_hz: float = 140.0,
    seed: int = 0,
) -> np.ndarray:
    """The int16 mono samples of :func:`synthesize_utterance` (read-only)."""
    return synthesize_utterance(
        text,
        sample_rate=sample_rate,
        words_per_second=words_per_second,
        pitch_hz=pitch_hz,
        seed=seed,
    ).samples


WordCallback = Callable[[int, str], None]


@dataclass(slots=True)
class _Playing:
    utterance: Utterance
    done: asyncio.Future[None]
    on_word: WordCallback | None
    position: int = 0
    next_word: int = 0


class SpeechTrack(MediaStreamTrack):
    """An audio track that speaks on demand and is silent otherwise, paced in real time.

    ``say(text)`` queues an utterance and returns a future that completes once its last frame
    has been handed to the sender; ``on_word(index, word)`` is called as each word's frame goes
    out, which is what lets the simulated interviewer emit transcript deltas *as it speaks*.
    Frames are 20 ms of 48 kHz s16 mono, the shape aiortc's Opus encoder takes as is.
    """

    kind = "audio"

    def __init__(
        self, *, words_per_second: float = 3.0, pitch_hz: float = 140.0, seed: int = 0
    ) -> None:
        super().__init__()
        self.words_per_second = words_per_second
        self.pitch_hz = pitch_hz
        self.seed = seed
        self._frame_samples = SAMPLE_RATE * FRAME_MS // 1000
        self._silence = np.zeros(self._frame_samples, dtype=np.int16)
        self._queue: deque[_Playing] = deque()
        self._start: float | None = None
        self._pts = 0

    def say(self, text: str, *, on_word: WordCallback | None = None) -> asyncio.Future[None]:
        """Queue ``text``; the future completes when it has been played (cancelled on stop)."""
        utterance = synthesize_utterance(
            text,
            words_per_second=self.words_per_second,
            pitch_hz=self.pitch_hz,
            seed=self.seed,
        )
        return self.play(utterance, on_word=on_word)

    def play(
        self, utterance: Utterance, *, on_word: WordCallback | None = None
    ) -> asyncio.Future[None]:
        """Queue pre-synthesized audio (48 kHz mono); like :meth:`say`."""
        if utterance.sample_rate != SAMPLE_RATE:
            raise ValueError(f"SpeechTrack plays {SAMPLE_RATE} Hz audio")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.readyState != "live":
            done.cancel()
        else:
            self._queue.append(_Playing(utterance, done, on_word))
        return done

    def interrupt(self) -> None:
        """Cut short what is playing and drop what is queued: their futures are cancelled, and
        the track goes on, silent."""
        while self._queue:
            self._queue.popleft().done.cancel()

    def stop(self) -> None:
        super().stop()
        self.interrupt()

    def _next_samples(self) -> np.ndarray:
        if not self._queue:
            return self._silence
        playing = self._queue[0]
        utterance = playing.utterance
        end = playing.position + self._frame_samples
        chunk = utterance.samples[playing.position : end]
        playing.position = end
        while playing.next_word < len(utterance.word_ends) and (
            utterance.word_ends[playing.next_word] <= end
        ):
            if playing.on_word is not None:
                playing.on_word(playing.next_word, utterance.words[playing.next_word])
            playing.next_word += 1
        if end >= len(utterance.samples):
            self._queue.popleft()
            if not playing.done.done():
                playing.done.set_result(None)
            chunk = np.concatenate([chunk, self._silence[: self._frame_samples - len(chunk)]])
        return chunk

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += self._frame_samples
            wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # real-time pacing, as aiortc's own tracks do
        frame = av.AudioFrame.from_ndarray(
            self._next_samples().reshape(1, -1), format="s16", layout="mono"
        )
        frame.pts = self._pts
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


@dataclass(frozen=True, slots=True)
class VoiceActivity:
    """A change of state: ``audio_ms`` counts from the first sample fed to the detector."""

    kind: Literal["speech_started", "speech_stopped"]
    audio_ms: int


class VoiceActivityDetector:
    """Energy-based voice activity: 10 ms windows, RMS against a dBFS threshold.

    Speech starts after ``onset_ms`` of consecutive loud windows (reported at the first of
    them) and stops after ``hangover_ms`` of quiet (reported at the end of the last loud
    window), so pauses between words do not split a turn and a click does not start one.
    """

    def __init__(
        self,
        *,
        threshold_dbfs: float = -40.0,
        onset_ms: int = 40,
        hangover_ms: int = 300,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if onset_ms <= 0 or hangover_ms <= 0:
            raise ValueError("onset_ms and hangover_ms must be positive")
        self.sample_rate = sample_rate
        self.onset_ms = onset_ms
        self.hangover_ms = hangover_ms
        self._threshold = 32768.0 * 10 ** (threshold_dbfs / 20)
        self._samples_seen = 0  # per channel, at self.sample_rate
        self._pending = np.zeros(0, dtype=np.float64)
        self._in_speech = False
        self._run_start_ms: float | None = None  # first loud window of the current loud run
        self._last_loud_end_ms = 0.0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def audio_ms(self) -> int:
        return int(self._samples_seen * 1000 / self.sample_rate)

    def feed(self, audio: av.AudioFrame | np.ndarray) -> list[VoiceActivity]:
        """Feed a frame (any s16 layout; its own rate) or mono samples at ``sample_rate``."""
        if isinstance(audio, av.AudioFrame):
            if audio.sample_rate != self.sample_rate:
                raise ValueError(f"expected {self.sample_rate} Hz frames, got {audio.sample_rate}")
            channels = len(audio.layout.channels)
            data = audio.to_ndarray().astype(np.float64)
            if audio.format.is_planar:
                mono = data.mean(axis=0)
            else:
                mono = data.reshape(-1, channels).mean(axis=1)
        else:
            mono = np.asarray(audio, dtype=np.float64).reshape(-1)
        window = self.sample_rate // 100
        samples = np.concatenate([self._pending, mono])
        usable = len(samples) - len(samples) % window
        self._pending = samples[usable:]
        if usable == 0:
            return []
        rms = np.sqrt(np.mean(samples[:usable].reshape(-1, window) ** 2, axis=1))
        events: list[VoiceActivity] = []
        for loud in rms >= self._threshold:
            start_ms = self._samples_seen * 1000 / self.sample_rate
            self._samples_seen += window
            end_ms = self._samples_seen * 1000 / self.sample_rate
            if loud:
                if self._run_start_ms is None:
                    self._run_start_ms = start_ms
                self._last_loud_end_ms = end_ms
                if not self._in_speech and end_ms - self._run_start_ms >= self.onset_ms:
                    self._in_speech = True
                    events.append(VoiceActivity("speech_started", int(self._run_start_ms)))
            else:
                self._run_start_ms = None
                if self._in_speech and end_ms - self._last_loud_end_ms >= self.hangover_ms:
                    self._in_speech = False
                    events.append(VoiceActivity("speech_stopped", int(self._last_loud_end_ms)))
        return events
