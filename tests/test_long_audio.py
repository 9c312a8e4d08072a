"""Long files: cut at pauses (asr.vad), decoded segment by segment with true times, in bounded memory;
short files keep the one-pass result."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.audio import audio_duration, load_audio, resample
from asr.model import load_model
from asr.transcribe import batch_logits, segments_logits, transcribe_file, transcript_from_logits
from asr.vad import SpeechSegmenter, segment_all
from conftest import SENTENCES, espeak

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000


@pytest.fixture(scope="module")
def model():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is as fast, and much faster next to other busy processes
    yield load_model()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    return [espeak(s) for s in SENTENCES]


def quiet(seconds: float, seed: int = 0) -> np.ndarray:
    """A pause: noise at -60 dBFS, like a quiet room (not digital silence, which any detector gets right)."""
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * 1e-3).astype(np.float32)


def joined(speech: list[np.ndarray], repeats: int = 1, pauses=(0.6, 1.5)) -> tuple[np.ndarray, list[tuple]]:
    """Sentences with pauses between them; returns the audio and [(start_s, end_s, text)]."""
    rng = np.random.default_rng(1)
    parts, spans, position = [quiet(0.7)], [], int(0.7 * RATE)
    for r in range(repeats):
        for i, (wave, text) in enumerate(zip(speech, SENTENCES)):
            spans.append((position / RATE, (position + len(wave)) / RATE, text))
            parts += [wave, quiet(rng.uniform(*pauses), seed=r * 10 + i)]
            position += len(wave) + len(parts[-1])
    return np.concatenate(parts), spans


# ---------------------------------------------------------------- the segmenter

def test_segments_are_the_sentences_padded_in_order(speech):
    audio, spans = joined(speech)
    segments = segment_all(audio)
    assert len(segments) == len(spans)
    for seg, (start, end, _) in zip(segments, spans):
        assert seg.start_seconds <= start + 0.05 and seg.end / RATE >= end - 0.05, (seg.start_seconds, start, end)
        assert seg.start_seconds >= start - 0.5 and seg.end / RATE <= end + 0.8
        assert np.array_equal(seg.audio, audio[seg.start:seg.end])  # the samples of that stretch, unchanged
    assert all(a.end <= b.start for a, b in zip(segments, segments[1:]))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 20000), min_size=1, max_size=30))
def test_segments_do_not_depend_on_chunking(speech, sizes):
    audio, _ = joined(speech[:3])
    reference = segment_all(audio)
    segmenter, out, i, k = SpeechSegmenter(), [], 0, 0
    while i < len(audio):
        n = sizes[k % len(sizes)]
        out += segmenter.accept(audio[i:i + n])
        i, k = i + n, k + 1
    out += segmenter.flush()
    assert [(s.start, len(s.audio)) for s in out] == [(s.start, len(s.audio)) for s in reference]


def test_speech_without_pauses_is_split_at_max_segment_into_contiguous_pieces(speech):
    audio = np.concatenate(speech * 2)  # ~30 s of speech, no pause long enough to end a segment
    segmenter = SpeechSegmenter(max_segment=5.0, min_silence=0.5)
    peak = 0
    segments = []
    for i in range(0, len(audio), 4000):
        segments += segmenter.accept(audio[i:i + 4000])
        peak = max(peak, sum(f.size for f in segmenter._frames))
    segments += segmenter.flush()
    assert len(segments) >= 5
    assert all(len(s.audio) <= 5.0 * RATE + 480 for s in segments)
    assert peak <= 5.6 * RATE  # it holds at most one segment (+ its padding)
    for a, b in zip(segments, segments[1:]):  # inside speech a split loses no sample
        if b.start == a.end:
            continue
        assert b.start > a.end  # a real pause was dropped


def test_silence_and_noise_give_no_segments():
    assert segment_all(np.zeros(30 * RATE, np.float32)) == []
    assert segment_all(quiet(30)) == []


# ---------------------------------------------------------------- transcribe_file on long files

def test_segments_logits_equal_each_alone(model, speech):
    parts = [speech[0], speech[1][:7000], speech[2]]
    for x, wave in zip(segments_logits(model, parts), parts):
        assert np.allclose(x.numpy(), batch_logits(model, wave).numpy(), atol=1e-4)


def test_short_files_keep_the_one_pass_result(model, speech, tmp_path):
    audio, _ = joined(speech[:3])
    path = tmp_path / "short.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    assert len(audio) / RATE < 30
    calls = []
    got = transcribe_file(model, path, align=True, progress=calls.append)
    want = transcript_from_logits(model, batch_logits(model, load_audio(path)), len(audio) / RATE, align=True)
    assert got == want
    assert calls == [pytest.approx(len(audio) / RATE)]


@pytest.fixture(scope="module")
def long_file(speech, tmp_path_factory) -> tuple[Path, np.ndarray, list[tuple]]:
    """~37 s of sentences and pauses, as 44.1 kHz stereo FLAC (so it is also resampled in the stream)."""
    audio, spans = joined(speech, repeats=2)  # ~37 s: above the 30 s where files are segmented
    path = tmp_path_factory.mktemp("long") / "long.flac"
    stereo = resample(audio, RATE, 44100)
    sf.write(path, np.stack([stereo, 0.5 * stereo], axis=1).clip(-1, 1), 44100)
    return path, audio, spans


def test_long_file_is_as_accurate_as_its_sentences_alone_with_true_times(model, long_file):
    from asr.training.evaluate import error_rates

    path, audio, spans = long_file
    assert len(audio) / RATE > 30
    calls: list[float] = []
    result = transcribe_file(model, path, align=True, progress=calls.append)
    refs = [text for _, _, text in spans]
    alone = [transcribe_file(model, _wav(audio, s, e, path.parent / f"clip{i}.wav")).text
             for i, (s, e, _) in enumerate(spans)]
    long_wer = error_rates([" ".join(refs)], [result.text]).wer
    alone_wer = error_rates(refs, alone).wer
    assert long_wer <= alone_wer + 0.03, (long_wer, alone_wer, result.text)
    assert result.duration == pytest.approx(len(audio) / RATE, abs=1e-3)
    # Word times are file times: every word lies inside the sentence it came from.
    assert result.words
    for w in result.words:
        mid = (w.start + w.end) / 2
        assert any(s - 0.3 <= mid <= e + 0.3 for s, e, _ in spans), (w, spans)
    # Progress: non-decreasing seconds done, several calls, the last one the whole duration.
    assert len(calls) >= 3 and calls == sorted(calls)
    assert calls[-1] == pytest.approx(result.duration)


def _wav(audio: np.ndarray, start: float, end: float, path: Path) -> Path:
    sf.write(path, audio[int(start * RATE):int(end * RATE)], RATE, subtype="FLOAT")
    return path


def test_long_file_streamed_in_chunks_equals_batch(model, long_file):
    path = long_file[0]
    batch = transcribe_file(model, path, align=True)
    streamed = transcribe_file(model, path, align=True, stream_chunk_ms=730)
    assert streamed.text == batch.text
    assert [w.text for w in streamed.words] == [w.text for w in batch.words]


def test_audio_duration_reads_the_header(long_file):
    assert audio_duration(long_file[0]) == pytest.approx(len(long_file[1]) / RATE, abs=0.01)


# Peak memory of one transcription, in a fresh process (ru_maxrss is a process-wide high-water mark).
MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys
    import torch
    torch.set_num_threads(1)  # speed on a shared machine; memory does not depend on it
    from asr.model import load_model
    from asr.transcribe import transcribe_file
    model = load_model()
    transcribe_file(model, sys.argv[2])  # warm up: torch's allocator, model buffers
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = transcribe_file(model, sys.argv[1])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (after - before) / 1024, "duration": result.duration, "text": result.text}))
""")


def peak_growth(path: Path, warmup: Path) -> dict:
    child = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), str(warmup)], capture_output=True,
                           text=True, timeout=1800, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.splitlines()[-1])


def write_long_sparse(path: Path, speech: list[np.ndarray], minutes: float, rate: int = 48000,
                      speech_every: float = 60.0) -> None:
    """A long 48 kHz stereo FLAC, written block by block: mostly digital silence, a sentence every minute."""
    chunk = resample(np.concatenate([speech[0], np.zeros(RATE // 2, np.float32)]), RATE, rate)
    with sf.SoundFile(str(path), "w", rate, 2, format="FLAC") as f:
        for k in range(int(minutes * 60 / speech_every)):
            f.write(np.stack([chunk, chunk], axis=1))
            f.write(np.zeros((int(speech_every * rate) - len(chunk), 2), np.float32))


def test_memory_stays_bounded_on_a_long_file(speech, tmp_path):
    """10 minutes at 48 kHz stereo: decoding it whole would take 230 MB as float32 before resampling."""
    path, warmup = tmp_path / "ten-minutes.flac", tmp_path / "warmup.flac"
    write_long_sparse(path, speech, 10)
    write_long_sparse(warmup, speech, 1, speech_every=40.0)
    probe = peak_growth(path, warmup)
    assert probe["duration"] == pytest.approx(600, abs=0.1)
    assert probe["growth_mb"] < 60, probe
    print(f"peak memory growth transcribing 10 min at 48 kHz stereo: {probe['growth_mb']:.1f} MB")


@pytest.mark.slow
def test_an_hour_long_file(speech, tmp_path):
    """One hour (48 kHz stereo): bounded memory, a transcript of every sentence in it."""
    path, warmup = tmp_path / "hour.flac", tmp_path / "warmup.flac"
    write_long_sparse(path, speech, 60, speech_every=20.0)
    write_long_sparse(warmup, speech, 1, speech_every=40.0)
    probe = peak_growth(path, warmup)
    assert probe["duration"] == pytest.approx(3600, abs=0.1)
    assert probe["growth_mb"] < 60, probe
    first = transcribe_file(load_model(), _wav(speech[0], 0, 99, tmp_path / "s.wav")).text
    assert probe["text"].count(first) >= 170, probe["text"][:500]  # 180 sentences
