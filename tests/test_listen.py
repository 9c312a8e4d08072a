"""`asr listen`: exact streaming resampler, live pipeline offline, CLI errors, and a real PulseAudio stack."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import StreamingResampler, resample
from asr.decoding import Word
from asr.endpoint import EndpointConfig
from asr.apps.listen import Printer
from asr.streaming import DIGITAL_SILENCE, FinalResult, LiveTranscriber
from asr.transcribe import transcribe

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- streaming resampler


def random_chunks(rng: np.random.Generator, n: int):
    """Chunk boundaries mixing empty, 1-sample, small and large chunks."""
    i = 0
    while i < n:
        size = int(rng.choice([0, 1, 2, 37, int(rng.integers(0, 3000))]))
        yield i, i + size
        i += size


@pytest.mark.parametrize("orig_sr", [44100, 48000, 8000, 22050, 16000])
def test_streaming_resampler_equals_batch_resample(orig_sr):
    rng = np.random.default_rng(orig_sr)
    for length in (0, 1, 5, 441, 12345, 30011):
        x = rng.standard_normal(length).astype(np.float32)
        expected = resample(x, orig_sr) if length else np.zeros(0, np.float32)
        r = StreamingResampler(orig_sr)
        pieces = [r.accept(x[a:b]) for a, b in random_chunks(rng, length)]
        interior = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        # Before flush, everything emitted is already final: a prefix of the batch result.
        assert len(interior) <= len(expected)
        np.testing.assert_allclose(interior, expected[:len(interior)], atol=1e-5)
        out = np.concatenate([interior, r.flush()])
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, atol=1e-5)
        assert r.samples_in == 0 and r.flush().size == 0  # flush resets


def test_streaming_resampler_emits_with_bounded_delay():
    r = StreamingResampler(44100)
    x = np.random.default_rng(1).standard_normal(44100).astype(np.float32)
    got = sum(r.accept(x[i:i + 441]).size for i in range(0, 44100, 441))
    assert 16000 - got <= 2 * 160  # at most ~2 output blocks (20 ms) held back for the kernel


# ---------------------------------------------------------------- live pipeline without a device


def trim_leading_silence(wave: np.ndarray) -> np.ndarray:
    """What the listener's digital-silence skip does to the start of an utterance."""
    return wave[int(np.flatnonzero(np.abs(wave) > DIGITAL_SILENCE)[0]):]


def session_signal(waves: list[np.ndarray], lead: float = 0.5, gap: float = 1.5,
                   last_gap: float | None = None) -> tuple[np.ndarray, list[float]]:
    """lead s of silence, then each wave followed by gap s of silence (last_gap after the last one);
    also each utterance's start time."""
    parts, starts, t = [np.zeros(int(lead * 16000), np.float32)], [], lead
    for i, w in enumerate(waves):
        starts.append(t)
        pause = int((gap if last_gap is None or i < len(waves) - 1 else last_gap) * 16000)
        parts += [w, np.zeros(pause, np.float32)]
        t += (len(w) + pause) / 16000
    return np.concatenate(parts), starts


def test_live_transcriber_cuts_utterances_like_file_transcription(overfit):
    model = overfit["model"]
    waves = [trim_leading_silence(w) for w in overfit["waves"]]
    expected = [transcribe(model, w).text for w in waves]
    audio, starts = session_signal(waves)
    stereo = np.stack([audio, audio], axis=1)  # exercises the downmix
    live = LiveTranscriber(model, 16000, EndpointConfig(silence=0.8))
    finals, partials = [], []
    for a, b in random_chunks(np.random.default_rng(0), len(stereo)):
        partial, done = live.accept(stereo[a:b])
        partials.append(partial)
        finals += done
    assert [f.reason for f in finals] == ["silence"] * 2  # both ended by rule 2, before the stream ended
    finals += live.finish()
    assert [f.text for f in finals] == expected
    assert any(p and p != expected[0] for p in partials)  # partial text grew while speaking
    for f, start, w in zip(finals, starts, waves):
        # Session-absolute times: each utterance lies within its place in the stream.
        assert start - 0.05 <= f.start < f.end <= start + len(w) / 16000 + 0.1
        assert [x.text for x in f.words] == f.text.split()
    assert live.utterances == 2


def test_live_transcriber_flushes_last_utterance_on_finish(overfit):
    model = overfit["model"]
    wave = trim_leading_silence(overfit["waves"][0])
    live = LiveTranscriber(model, 16000)
    partial, finals = live.accept(wave)
    assert finals == [] and partial
    (last,) = live.finish()
    assert last.reason == "end" and last.text == transcribe(model, wave).text
    assert live.finish() == []  # nothing left


# ---------------------------------------------------------------- CLI without a sound server


def run_asr(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asr", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def no_server_env(tmp_path: Path) -> dict:
    env = dict(os.environ, HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path),
               PULSE_SERVER=f"unix:{tmp_path}/no-such-socket")
    return env


def test_missing_device_is_one_clear_error(tmp_path, overfit):
    r = run_asr("listen", "--no-lm", "--model", str(overfit["path"]), "--device", "nonexistent-device-xyz",
                env=no_server_env(tmp_path))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "nonexistent-device-xyz" in lines[0] and "available input devices" in lines[0]
    assert r.stdout == ""


def test_bad_listen_options_exit_2(tmp_path, overfit):
    r = run_asr("listen", "--no-lm", "--model", str(overfit["path"]), "--endpoint-silence", "0", env=no_server_env(tmp_path))
    assert r.returncode == 2 and "silence" in r.stderr


# ---------------------------------------------------------------- a real PulseAudio stack


class Pulse:
    """A private PulseAudio daemon with two null sinks: 16 kHz mono and 48 kHz stereo."""

    SINKS = {"asr16": (16000, 1), "asr48": (48000, 2)}

    def __init__(self, root: Path):
        self.root = root
        self.socket = root / "native"
        self.env = dict(os.environ, HOME=str(root), XDG_RUNTIME_DIR=str(root), PULSE_SERVER=f"unix:{self.socket}")
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        lines = [f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}"]
        lines += [f"load-module module-null-sink sink_name={n} rate={r} channels={c}"
                  for n, (r, c) in self.SINKS.items()]
        lines += ["set-default-sink asr16", "set-default-source asr16.monitor"]
        (self.root / "default.pa").write_text("\n".join(lines) + "\n")
        log = open(self.root / "pulse.log", "w")
        self.daemon = subprocess.Popen(["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1",
                                        "-F", str(self.root / "default.pa")], env=self.env,
                                       stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(self.daemon)
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "pulse.log").read_text()[-1500:]
                pytest.skip(f"PulseAudio daemon could not start: {tail}")
            time.sleep(0.1)
        # An idle null sink renders in ~2 s blocks and capture would lose its first seconds:
        # keep a silent low-latency stream playing into each sink, then let it settle.
        for name, (rate, channels) in self.SINKS.items():
            self.procs.append(subprocess.Popen(
                ["pacat", "--playback", "-d", name, "--latency-msec=20", "--format=s16le", f"--rate={rate}",
                 f"--channels={channels}", "/dev/zero"], env=self.env, stderr=subprocess.DEVNULL))
        time.sleep(2.0)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()

    def recording(self) -> bool:
        out = subprocess.run(["pactl", "list", "short", "source-outputs"], env=self.env, capture_output=True,
                             text=True).stdout
        return bool(out.strip())


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    missing = [b for b in ("pulseaudio", "pactl", "pacat", "paplay") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"PulseAudio binaries missing: {', '.join(missing)} (bash .ci/install installs them)")
    server = Pulse(tmp_path_factory.mktemp("pulse"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def listen_session(pulse: Pulse, source: str, sink: str, play: Path, args: list[str], expected_finals: int):
    """Run `asr listen`, play `play` into `sink` once it records, wait for the finals, Ctrl-C it.

    Returns (JSON finals, stderr, arrival time of each final, time paplay returned).
    """
    env = dict(pulse.env, PULSE_SOURCE=source)  # the ALSA "pulse" device records the default source
    # --no-int8: the finals are compared with fp32 `asr transcribe` output; int8 rounds differently.
    proc = subprocess.Popen([sys.executable, "-m", "asr", "listen", "--json", "--no-int8", "--device", "pulse", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrivals: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: arrivals.extend((time.monotonic(), line) for line in proc.stdout))
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not pulse.recording():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "asr listen never opened its input stream"
            time.sleep(0.1)
        time.sleep(0.5)
        subprocess.run(["paplay", "-d", sink, str(play)], env=pulse.env, check=True, timeout=60)
        played = time.monotonic()
        deadline = played + 20
        while len(arrivals) < expected_finals and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    return [json.loads(line) for _, line in arrivals], err, [t for t, _ in arrivals], played


def test_list_devices_shows_pulse(pulse):
    r = run_asr("listen", "--list-devices", env=pulse.env)
    assert r.returncode == 0, r.stderr
    assert any("pulse" in line for line in r.stdout.splitlines())


def test_listen_through_pulseaudio_matches_file_transcription(pulse, overfit, tmp_path):
    """16 kHz mono sink captured at 16 kHz: PulseAudio passes samples through bit-exactly, so the live
    finals must equal `asr transcribe` of each utterance, even for this brittle overfit model."""
    waves = [trim_leading_silence(w) for w in overfit["waves"]]
    files = []
    for i, w in enumerate(waves):
        sf.write(tmp_path / f"utt{i}.wav", w, 16000)
        files.append(tmp_path / f"utt{i}.wav")
    r = run_asr("transcribe", "--no-lm", "--model", str(overfit["path"]), *map(str, files), env=pulse.env)
    assert r.returncode == 0, r.stderr
    expected = [line.split(": ", 1)[1] for line in r.stdout.splitlines()]
    gap = 1.5
    # One continuous stream: a new playback stream's first samples are ramped or lost by the server.
    audio, starts = session_signal(waves, lead=0.5, gap=gap)
    sf.write(tmp_path / "session.wav", audio, 16000)

    finals, err, arrived, played = listen_session(
        pulse, "asr16.monitor", "asr16", tmp_path / "session.wav",
        ["--no-lm", "--model", str(overfit["path"]), "--samplerate", "16000", "--chunk-ms", "100"], len(waves))
    assert [f["text"] for f in finals] == expected, err
    assert "2 utterance(s), 0 input overflow(s), 0 dropped block(s)" in err
    for f in finals:
        assert [w["word"] for w in f["words"]] == f["text"].split()
        assert f["start"] < f["end"]
        assert all(0 < w["confidence"] <= 1 for w in f["words"])
    # Session-absolute times keep the played spacing between utterances.
    assert finals[1]["start"] - finals[0]["start"] == pytest.approx(starts[1] - starts[0], abs=0.1)
    # Latency: the last utterance's final arrives within endpoint silence + a margin after its last
    # sample was played (paplay returns once the trailing `gap` of silence has been played too).
    latency = arrived[-1] - (played - gap)
    print(f"\nfinal-result latency after the last spoken sample: {latency:.2f} s")
    assert latency < 0.8 + 1.0


def test_listen_resamples_native_rate_capture(pulse, overfit, tmp_path):
    """48 kHz stereo sink captured at the device's default rate: the live finals equal an offline
    replay of the saved capture, and the capture is the played audio (after resampling).
    The last utterance is followed by too little silence to end it: Ctrl-C must flush it."""
    waves = [trim_leading_silence(w) for w in overfit["waves"]]
    audio, _ = session_signal(waves, lead=0.5, gap=1.5, last_gap=0.3)
    sf.write(tmp_path / "session.wav", audio, 16000)
    saved = tmp_path / "capture.wav"
    finals, err, _, _ = listen_session(
        pulse, "asr48.monitor", "asr48", tmp_path / "session.wav",
        ["--no-lm", "--model", str(overfit["path"]), "--save", str(saved), "--chunk-ms", "50"], len(waves) - 1)
    assert len(finals) == len(waves), err
    assert "0 input overflow(s), 0 dropped block(s)" in err

    captured, rate = sf.read(saved, dtype="float32", always_2d=True)
    assert rate != 16000 and captured.shape[1] == 2  # really went through the resampler
    assert f"listened {len(captured) / rate:.1f} s ({rate} Hz, 2 ch" in err
    mono = resample(captured.mean(axis=1), rate)
    lag = int(np.argmax(np.correlate(mono, audio[:16000 * 3], "valid")))
    segment = mono[lag:lag + len(audio)]
    # Two resamplings in PulseAudio (speex) and a sub-sample lag keep this a little below 1.
    assert np.corrcoef(segment, audio[:len(segment)])[0, 1] > 0.97

    # The live pipeline (queue, chunking, resampling, endpointing) is exactly the offline one.
    live = LiveTranscriber(overfit["model"], rate)
    block = round(rate * 0.05)
    replay = []
    for i in range(0, len(captured), block):
        replay += live.accept(captured[i:i + block])[1]
    finished = live.finish()
    assert [f.reason for f in finished] == ["end"]  # the flushed partial
    replay += finished
    assert [json.loads(f.to_json()) for f in replay] == finals


# ---------------------------------------------------------------- terminal output


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_printer_redraws_partials_on_a_tty_and_prints_only_finals_elsewhere():
    result = FinalResult("open the door", 1.25, 2.5, [Word("open", 1.25, 1.5, 0.9)])
    tty, err = FakeTTY(), io.StringIO()
    p = Printer(tty, err, json_lines=False, timestamps=True)
    p.partial("open")
    p.partial("open")  # unchanged: not redrawn
    p.partial("open the")
    p.final(result)
    assert tty.getvalue() == "\r\x1b[2Kopen\r\x1b[2Kopen the\r\x1b[2K[1.25-2.50] open the door\n"
    pipe = io.StringIO()
    p = Printer(pipe, err, json_lines=True, timestamps=False)
    p.partial("open")
    p.final(result)
    assert json.loads(pipe.getvalue()) == {"text": "open the door", "start": 1.25, "end": 2.5, "words": [
        {"word": "open", "start": 1.25, "end": 1.5, "confidence": 0.9}]}
    p = Printer(FakeTTY(), err, json_lines=False, timestamps=False)
    p.partial("x")
    p.warn("audio lost: 1 input overflow(s)")
    assert err.getvalue() == "asr: warning: audio lost: 1 input overflow(s)\n"


# ---------------------------------------------------------------- lost audio is counted, never silent


class FakeStatus:
    def __init__(self, overflow: bool):
        self.input_overflow = overflow


def fake_sounddevice(audio: np.ndarray, rate: int, overflow_blocks: set[int]):
    """A stand-in for the sounddevice module whose stream pushes `audio` as fast as it can (so the
    bounded queue may fill), flags some blocks as PortAudio overflows, then sends Ctrl-C."""
    import types

    sd = types.ModuleType("sounddevice")

    class PortAudioError(Exception):
        pass

    device = {"name": "fake mic", "index": 0, "max_input_channels": 2, "default_samplerate": float(rate)}

    def query_devices(device_spec=None, kind=None):
        if kind is None:
            return [device]
        if device_spec not in (None, 0, "fake"):
            raise ValueError(f"No input device matching {device_spec!r}")
        return device

    class InputStream:
        def __init__(self, device, samplerate, channels, dtype, blocksize, callback):
            self.blocksize, self.callback, self.channels = blocksize, callback, channels

        def _run(self):
            for i, a in enumerate(range(0, len(audio), self.blocksize)):
                block = audio[a:a + self.blocksize]
                if len(block) < self.blocksize:
                    break
                self.callback(np.repeat(block[:, None], self.channels, axis=1), len(block), None,
                              FakeStatus(i in overflow_blocks))
            time.sleep(1.2)  # let the warning (rate-limited to 1/s) go out
            os.kill(os.getpid(), signal.SIGINT)

        def __enter__(self):
            self.thread = threading.Thread(target=self._run)
            self.thread.start()
            return self

        def __exit__(self, *exc):
            self.thread.join()

    sd.PortAudioError, sd.query_devices, sd.InputStream = PortAudioError, query_devices, InputStream
    return sd


def test_overflows_and_drops_are_counted_and_reported(overfit, tmp_path, monkeypatch, capsys):
    from asr.apps.cli import main

    waves = [trim_leading_silence(w) for w in overfit["waves"]]
    audio, _ = session_signal(waves, lead=0.5, gap=1.5)
    chunk = 160  # 10 ms blocks: the ~10 s queue holds 1000 of them, the stream pushes ~750 at once
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(audio, 16000, {3, 40}))
    saved = tmp_path / "capture.wav"
    # --no-int8: with nothing dropped the finals are compared with fp32 `transcribe` (int8 rounds differently)
    assert main(["listen", "--no-lm", "--model", str(overfit["path"]), "--device", "fake", "--chunk-ms", "10", "--no-int8",
                 "--save", str(saved)]) == 0
    out, err = capsys.readouterr()
    assert "asr: warning: audio lost: 2 input overflow(s)" in err
    summary = err.strip().splitlines()[-1]
    assert "2 input overflow(s)" in summary
    dropped = int(summary.split("overflow(s), ")[1].split(" dropped")[0])
    captured, rate = sf.read(saved, dtype="float32", always_2d=True)
    # Every block is either transcribed/saved or counted as dropped.
    assert len(captured) + dropped * chunk == len(audio) // chunk * chunk
    assert rate == 16000 and captured.shape[1] == 2
    if dropped == 0:  # nothing lost: the transcript is the file transcription
        assert out.splitlines() == [transcribe(overfit["model"], w).text for w in waves]
