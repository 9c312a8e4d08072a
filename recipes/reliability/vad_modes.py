"""Voice-activity detectors compared on one joined recording (docs/reliability.md, "Which VAD").

    python recipes/reliability/vad_modes.py /work/shared/data/realspeech/dev.jsonl --source commonvoice1
    python recipes/reliability/vad_modes.py /tmp/rel/synth/test

Builds the same tape as `python -m asr.apps.long_audio MANIFEST --minutes 5` (asr.apps.long_audio.build_tape,
seed 0) and, for WebRTC VAD in modes 3 (asr's default) to 0 and for Silero VAD: the detector's own cost
(segmenting the whole tape, no model), how many pauses between clips it cut (no segment runs across the
pause), segments spanning two or more clips, cuts inside a clip, and the WER of the whole file transcribed
with that segmenter (greedy; asr.transcribe.transcribe_file).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from asr.apps.long_audio import build_tape
from asr.audio import load_audio
from asr.model import load_model
from asr.training.evaluate import error_rates
from asr.transcribe import transcribe_file
from asr.vad import SileroDetector, SpeechSegmenter, WebRtcDetector, segment_all

DETECTORS = [("webrtc mode 3 (default)", lambda: WebRtcDetector(3)), ("webrtc mode 2", lambda: WebRtcDetector(2)),
             ("webrtc mode 1", lambda: WebRtcDetector(1)), ("webrtc mode 0", lambda: WebRtcDetector(0)),
             ("silero", SileroDetector)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("--source")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--tape", default="/tmp/asr-vad-modes.flac")
    args = p.parse_args()
    torch.set_num_threads(1)
    tape = Path(args.tape)
    clips = build_tape(args.manifest, tape, args.minutes, args.source, 0)
    audio = load_audio(tape)
    seconds = len(audio) / 16000
    ref = " ".join(c["text"] for c in clips)
    model = load_model()
    print(f"tape {tape}: {seconds / 60:.1f} min, {len(clips)} clips, {len(clips) - 1} pauses between clips")
    print("| detector | detector-only RTF | segments | pauses between clips cut | segments spanning 2+ clips "
          "| cuts inside a clip | WER % (greedy) | whole-file RTF |\n|---|---|---|---|---|---|---|---|")
    for name, make in DETECTORS:
        start = time.perf_counter()
        segments = segment_all(audio, SpeechSegmenter(make()))
        t_vad = time.perf_counter() - start
        spans = [(s.start / 16000, s.end / 16000) for s in segments]
        merged = sum(1 for i in range(len(clips) - 1)
                     if any(a < clips[i]["end"] - 0.3 and b > clips[i + 1]["start"] + 0.3 for a, b in spans))
        spanning = sum(1 for a, b in spans if sum(c["start"] < b - 0.3 and c["end"] > a + 0.3 for c in clips) >= 2)
        inside = sum(1 for _, b in spans if any(c["start"] + 0.3 < b < c["end"] - 0.3 for c in clips))
        start = time.perf_counter()
        text = transcribe_file(model, tape, None, segmenter=SpeechSegmenter(make())).text
        t_all = time.perf_counter() - start
        wer = error_rates([ref], [text]).wer
        print(f"| {name} | {t_vad / seconds:.4f} | {len(segments)} | {len(clips) - 1 - merged} of {len(clips) - 1} "
              f"| {spanning} | {inside} | {100 * wer:.2f} | {t_all / seconds:.4f} |", flush=True)


if __name__ == "__main__":
    main()
