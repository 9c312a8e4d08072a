"""Long-audio accuracy: labelled clips joined into one long recording vs the same clips one by one.

    python -m asr.apps.long_audio /work/shared/data/realspeech/dev.jsonl --source commonvoice1 --minutes 30
    python -m asr.apps.long_audio /work/data/synth/test --minutes 30 --vad webrtc silero --one-pass

Writes the clips (shuffled, seed), with pauses of 0.5-2 s of quiet noise (-60 dBFS) between them, into one
FLAC (block by block), then transcribes it with `asr.transcribe.transcribe_file` and compares the WER with
transcribing each clip alone. Words of the long transcript are given back to clips by their times, so the
WER can also be shown per part of the recording (accuracy must not fall with length) and word times are
checked (a word whose time lies in no clip is an insertion). `--one-pass` also runs the whole file as one
GRU pass (the behaviour before long files were segmented), `--vad silero` uses Silero VAD instead of WebRTC.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import soundfile as sf

from ..features import SAMPLE_RATE


def build_tape(source_path: str, out: Path, minutes: float, source: Optional[str], seed: int,
               pause: tuple[float, float] = (0.5, 2.0)) -> list[dict]:
    """Writes the long recording; returns its clips: {path, text, start, end} (seconds in the recording).
    `source_path`: a jsonl manifest or a LibriSpeech-layout folder (asr.training.data.load_manifest)."""
    from ..audio import AudioError, load_audio
    from ..training.data import load_manifest

    utts = [u for u in load_manifest(source_path) if source is None or u.source == source]
    utts.sort(key=lambda u: str(u.path))
    random.Random(seed).shuffle(utts)
    rng = np.random.default_rng(seed)
    clips: list[dict] = []
    position = 0
    with sf.SoundFile(str(out), "w", SAMPLE_RATE, 1, format="FLAC", subtype="PCM_16") as f:
        def quiet(seconds: float) -> None:
            nonlocal position
            n = int(seconds * SAMPLE_RATE)
            f.write((rng.standard_normal(n) * 1e-3).astype(np.float32))
            position += n

        quiet(rng.uniform(*pause))
        for u in utts:
            if position >= minutes * 60 * SAMPLE_RATE:
                break
            try:
                audio = load_audio(u.path)
            except AudioError as e:
                print(f"long_audio: skipping {e}", file=sys.stderr)
                continue
            clips.append({"path": str(u.path), "text": u.text,
                          "start": position / SAMPLE_RATE, "end": (position + len(audio)) / SAMPLE_RATE})
            f.write(np.clip(audio, -1, 1))
            position += len(audio)
            quiet(rng.uniform(*pause))
    return clips


def words_per_clip(clips: Sequence[dict], words: Sequence) -> tuple[list[str], int]:
    """The long transcript's words given to the clip their middle falls in (halfway into each pause);
    also how many words fell in no clip at all."""
    edges = [0.0] + [(clips[i]["end"] + clips[i + 1]["start"]) / 2 for i in range(len(clips) - 1)] + [float("inf")]
    out: list[list[str]] = [[] for _ in clips]
    stray = 0
    k = 0
    for w in words:
        mid = (w.start + w.end) / 2
        while k + 1 < len(clips) and mid >= edges[k + 1]:
            k += 1
        if clips[k]["start"] - 1.0 <= mid <= clips[k]["end"] + 1.0:
            out[k].append(w.text)
        else:
            stray += 1
    return [" ".join(x) for x in out], stray


def run(args: argparse.Namespace) -> int:
    from ..training.evaluate import error_rates
    from ..transcribe import transcribe_file
    from ..vad import SileroDetector, SpeechSegmenter
    from .common import command_decoder, command_model

    import torch

    # One thread by default: two threads next to other busy processes on a 2-core machine are slower, and
    # noisier, than one (oversubscription), which would swamp the comparison.
    torch.set_num_threads(args.threads)
    model = command_model(args.model)
    decoder = command_decoder(model, args)
    out = Path(args.tape or f"/tmp/asr-long-{args.minutes:g}min-seed{args.seed}.flac")
    clips = build_tape(args.manifest, out, args.minutes, args.source, args.seed)
    total = sf.info(str(out)).duration
    refs = [c["text"] for c in clips]
    print(f"tape: {out}: {total / 60:.1f} min, {len(clips)} clips, {sum(len(r.split()) for r in refs)} words; "
          f"decoder: {'beam+LM' if decoder is not None else 'greedy'}; load average {os.getloadavg()[0]:.2f}",
          flush=True)
    rows = []

    start = time.perf_counter()
    alone = [transcribe_file(model, c["path"], decoder).text for c in clips]
    t_alone = time.perf_counter() - start
    e = error_rates(refs, alone)
    rows.append(("clips one by one", e.wer, e.cer, t_alone))

    for vad in args.vad:
        segmenter = SpeechSegmenter(SileroDetector()) if vad == "silero" else SpeechSegmenter()
        start = time.perf_counter()
        long = transcribe_file(model, out, decoder, align=True, segmenter=segmenter)
        t_long = time.perf_counter() - start
        e = error_rates([" ".join(refs)], [long.text])
        rows.append((f"one {total / 60:.0f}-min file, segmented ({vad} VAD)", e.wer, e.cer, t_long))
        per_clip, stray = words_per_clip(clips, long.words)
        third = max(1, len(clips) // 3)
        print(f"{vad} VAD: WER by part of the recording (long-file words given to clips by their times):")
        for a, b in ((0, third), (third, 2 * third), (2 * third, len(clips))):
            e_long, e_alone = error_rates(refs[a:b], per_clip[a:b]), error_rates(refs[a:b], alone[a:b])
            print(f"  clips {a + 1}-{b} ({clips[a]['start'] / 60:.0f}-{clips[b - 1]['end'] / 60:.0f} min): "
                  f"WER {100 * e_long.wer:.2f}% (the same clips alone: {100 * e_alone.wer:.2f}%)")
        print(f"  words placed in no clip (time outside every clip ±1 s): {stray} of {len(long.words)}", flush=True)

    if args.one_pass:
        start = time.perf_counter()
        whole = transcribe_file(model, out, decoder, long_file_seconds=float("inf"))
        e = error_rates([" ".join(refs)], [whole.text])
        rows.append((f"one {total / 60:.0f}-min file, one GRU pass (before)", e.wer, e.cer,
                     time.perf_counter() - start))

    print("\n| input | WER % | CER % | seconds | RTF |\n|---|---|---|---|---|")
    for name, wer, cer, seconds in rows:
        print(f"| {name} | {100 * wer:.2f} | {100 * cer:.2f} | {seconds:.0f} | {seconds / total:.4f} |")
    print(f"\nload average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .common import add_decoder_arguments

    p.add_argument("manifest",
                   help="labelled clips: a jsonl manifest (path, text, source) or a LibriSpeech-layout folder")
    p.add_argument("--source", help="only clips whose `source` is this (e.g. commonvoice1)")
    p.add_argument("--minutes", type=float, default=30.0, help="length of the joined recording (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tape", help="where to write the joined recording (default: /tmp)")
    p.add_argument("--model", help="model checkpoint (default: bundled)")
    p.add_argument("--vad", choices=("webrtc", "silero"), nargs="+", default=["webrtc"],
                   help="voice-activity detector(s) to segment with (several: each in turn)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--one-pass", action="store_true", help="also run the whole file as one GRU pass")
    add_decoder_arguments(p, hotwords=False)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m asr.apps.long_audio", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
