"""`asr listen`: live transcription from a microphone (or any PortAudio input device).

Threads: PortAudio's callback only copies each block into a bounded queue (it must never block
or the driver overflows); the main thread downmixes, resamples to 16 kHz exactly as file
transcription does (`StreamingResampler`), runs the streaming recognizer, cuts utterances with
the endpointer and prints. Lost audio is always reported: PortAudio input overflows and blocks
dropped because the queue was full are counted, warned about and totalled at exit.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TextIO, Union

import numpy as np

from ..endpoint import EndpointConfig
from ..streaming import DIGITAL_SILENCE, FinalResult, LiveTranscriber  # noqa: F401 (FinalResult: API)
from .common import add_decoder_arguments

DeviceSpec = Union[int, str, None]
class Printer:
    """Finals one per line; on a terminal the current partial is redrawn in place below them."""

    def __init__(self, out: TextIO, err: TextIO, json_lines: bool, timestamps: bool):
        self.out, self.err = out, err
        self.json_lines, self.timestamps = json_lines, timestamps
        # Partials only make sense on a terminal; a pipe or file gets clean final lines (or JSON).
        self.live = out.isatty() and not json_lines
        self._partial = ""

    def _clear(self) -> None:
        if self.live and self._partial:
            self.out.write("\r\x1b[2K")
            self.out.flush()

    def partial(self, text: str) -> None:
        if not self.live or text == self._partial:
            return
        width = max(10, shutil.get_terminal_size().columns - 1)
        # Show the tail: a line that wraps could no longer be erased with \r.
        shown = text if len(text) <= width else "…" + text[-(width - 1):]
        self.out.write("\r\x1b[2K" + shown)
        self.out.flush()
        self._partial = text

    def final(self, result: FinalResult) -> None:
        self._clear()
        self._partial = ""
        if self.json_lines:
            line = result.to_json()
        elif self.timestamps:
            line = f"[{result.start:.2f}-{result.end:.2f}] {result.text}"
        else:
            line = result.text
        self.out.write(line + "\n")
        self.out.flush()

    def warn(self, message: str) -> None:
        self._clear()
        print(f"asr: warning: {message}", file=self.err, flush=True)
        if self.live and self._partial:
            self.out.write(self._partial)
            self.out.flush()


def parse_device(value: Optional[str]) -> DeviceSpec:
    """An all-digit --device is a PortAudio index, anything else a (sub)string of the name."""
    if value is None or value == "":
        return None
    return int(value) if value.strip().isdigit() else value


def input_devices(sd: Any) -> list[tuple[int, dict]]:
    return [(i, d) for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def describe_inputs(sd: Any) -> str:
    devices = input_devices(sd)
    if not devices:
        return "none (is a sound server such as PulseAudio running?)"
    return ", ".join(f"{i} '{d['name']}'" for i, d in devices)


def list_devices(sd: Any, out: TextIO) -> None:
    try:
        default = sd.query_devices(kind="input")["index"]
    except (ValueError, sd.PortAudioError):
        default = None
    devices = input_devices(sd)
    for i, d in devices:
        mark = "*" if i == default else " "
        out.write(f"{mark} {i:3d}  {d['name']}  ({d['max_input_channels']} ch, "
                  f"{d['default_samplerate']:.0f} Hz)\n")
    if not devices:
        print("asr: no audio input devices found (is a sound server such as PulseAudio running?)",
              file=sys.stderr)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", metavar="NAME|INDEX",
                   help="input device: PortAudio index or (part of) its name (default: system default)")
    p.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    p.add_argument("--samplerate", type=int, default=0, metavar="HZ",
                   help="capture rate in Hz (default: the device's default rate); resampled to 16 kHz")
    p.add_argument("--chunk-ms", type=float, default=100.0, metavar="MS",
                   help="capture block length in ms (default 100; smaller = lower latency, more CPU)")
    p.add_argument("--model", metavar="PATH", help="model checkpoint (default: bundled)")
    # Default on: measured by `asr bench --int8 --eval-data`, int8 moved the bundled model's test WER
    # by 0.02 points (71.50 -> 71.52 %) and streams 1.3-1.6x faster on one core.
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                   help="int8 GRU/linear weights for CPU streaming (default; --no-int8 for fp32)")
    p.add_argument("--save", metavar="FILE.wav",
                   help="also write the captured audio (native rate and channels, float32 wav)")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per utterance: {"text","start","end","words":[...]}')
    p.add_argument("--timestamps", action="store_true", help="prefix each utterance with [start-end] seconds")
    p.add_argument("--endpoint-silence", type=float, default=EndpointConfig.silence, metavar="SECONDS",
                   help="end an utterance after this much trailing silence once something was recognised "
                        f"(default {EndpointConfig.silence} s)")
    p.add_argument("--endpoint-silence-no-speech", type=float, default=EndpointConfig.silence_no_speech,
                   metavar="SECONDS",
                   help="restart after this much silence even if nothing was recognised "
                        f"(default {EndpointConfig.silence_no_speech} s)")
    p.add_argument("--max-utterance", type=float, default=EndpointConfig.max_utterance, metavar="SECONDS",
                   help=f"cut utterances longer than this (default {EndpointConfig.max_utterance} s)")
    add_decoder_arguments(p)
    p.add_argument("--skip-silence-below", type=float, default=DIGITAL_SILENCE, metavar="LEVEL",
                   help="between utterances, do not feed samples with |amplitude| <= LEVEL to the model "
                        f"(digital silence; default {DIGITAL_SILENCE}, 0 feeds everything)")


@dataclass
class Counters:
    """Written by the PortAudio callback thread (int increments), read by the main thread."""
    overflows: int = 0
    dropped: int = 0
    frames: int = 0

    @property
    def lost(self) -> int:
        return self.overflows + self.dropped


def run(args: argparse.Namespace, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    from .common import command_decoder, command_model, error

    out = out or sys.stdout  # looked up per call, so redirection (and pytest capture) applies
    err = err or sys.stderr

    try:
        import sounddevice as sd
    except OSError as e:  # the wheel needs the system PortAudio library
        error(f"cannot use audio input: {e} (install libportaudio2)")
        return 2
    if args.list_devices:
        list_devices(sd, out)
        return 0
    try:
        endpoint = EndpointConfig(args.endpoint_silence, args.endpoint_silence_no_speech, args.max_utterance)
    except ValueError as e:
        error(str(e))
        return 2
    if args.samplerate < 0:
        error(f"--samplerate must be > 0, got {args.samplerate}")
        return 2
    if not args.chunk_ms > 0:
        error(f"--chunk-ms must be > 0, got {args.chunk_ms}")
        return 2

    device = parse_device(args.device)
    name = "default" if device is None else repr(device)
    try:
        info = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as e:
        reason = str(e).splitlines()[0] if str(e) else "not found"
        error(f"input device {name}: {reason}; available input devices: {describe_inputs(sd)}")
        return 2
    rate = int(args.samplerate or info["default_samplerate"])
    # Mono/stereo mics capture natively; virtual devices (ALSA "pulse"/"default") advertise up to
    # 32 channels that would only be upmixed copies, so take at most 2.
    channels = max(1, min(int(info["max_input_channels"]), 2))
    blocksize = max(1, round(rate * args.chunk_ms / 1000))

    model = command_model(args.model, args.int8)
    transcriber = LiveTranscriber(model, rate, endpoint, args.skip_silence_below, command_decoder(model, args))
    printer = Printer(out, err, args.json, args.timestamps)

    blocks: "queue.Queue[np.ndarray]" = queue.Queue(maxsize=max(8, int(10_000 / args.chunk_ms)))  # ~10 s
    counters = Counters()

    def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs on PortAudio's thread: copy and go. Anything slow here causes overflows.
        if status.input_overflow:
            counters.overflows += 1
        try:
            blocks.put_nowait(indata.copy())
        except queue.Full:
            counters.dropped += 1

    save = None
    if args.save:
        import soundfile as sf

        target = Path(args.save)
        partial_path = target.with_name(f".{target.name}.part")
        try:
            save = sf.SoundFile(str(partial_path), "w", samplerate=rate, channels=channels,
                                subtype="FLOAT", format="WAV")
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            error(f"--save {args.save}: cannot write ({str(e).splitlines()[0]})")
            return 2

    try:
        stream = sd.InputStream(device=device, samplerate=rate, channels=channels, dtype="float32",
                                blocksize=blocksize, callback=callback)
    except (ValueError, sd.PortAudioError) as e:
        reason = str(e).splitlines()[0] if str(e) else "cannot open"
        error(f"input device {name} ('{info['name']}'): cannot open ({reason}); "
              f"available input devices: {describe_inputs(sd)}")
        if save is not None:
            save.close()
            os.unlink(partial_path)
        return 2

    # Ctrl-C sets a flag the loop checks between blocks, so it never interrupts a half-processed
    # block and the final flush sees consistent state.
    stop = threading.Event()
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        def on_sigint(signum: int, frame: Any) -> None:
            if stop.is_set():  # a second Ctrl-C: stop at once, without the final flush
                raise KeyboardInterrupt
            stop.set()

        previous_handler = signal.signal(signal.SIGINT, on_sigint)
    reported = 0
    last_warning = 0.0

    def process(block: np.ndarray) -> None:
        counters.frames += block.shape[0]
        if save is not None:
            save.write(block)
        partial, finals = transcriber.accept(block)
        for result in finals:
            printer.final(result)
        printer.partial(partial)

    try:
        with stream:
            while not stop.is_set():
                try:
                    process(blocks.get(timeout=0.1))
                except queue.Empty:
                    pass
                now = time.monotonic()
                if counters.lost != reported and now - last_warning >= 1.0:  # at most one warning a second
                    printer.warn(f"audio lost: {counters.overflows} input overflow(s), "
                                 f"{counters.dropped} block(s) dropped (queue full: transcription too slow?)")
                    reported, last_warning = counters.lost, now
        while True:  # blocks captured before the stream stopped
            try:
                process(blocks.get_nowait())
            except queue.Empty:
                break
        for result in transcriber.finish():
            printer.final(result)
    except KeyboardInterrupt:
        if stop.is_set():  # second Ctrl-C
            raise
        # Not on the main thread (no handler installed): flush what we have.
        for result in transcriber.finish():
            printer.final(result)
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
        if save is not None:
            save.close()
            os.replace(partial_path, args.save)
    print(f"asr: listened {counters.frames / rate:.1f} s ({rate} Hz, {channels} ch, device '{info['name']}'), "
          f"{transcriber.utterances} utterance(s), {counters.overflows} input overflow(s), "
          f"{counters.dropped} dropped block(s)", file=err, flush=True)
    return 0
