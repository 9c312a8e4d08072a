"""New training voices from a corpus's own audio: WORLD-vocoder resynthesis with changed formants and F0.

Why: the held-out festival and flite test voices are vocoders the model has heard only two or three
of, and the Debian engines have no more English voices. Analysing training audio with the WORLD
vocoder (pyworld: F0, spectral envelope, aperiodicity) and resynthesizing it with each chapter's
envelope warped along the frequency axis (formants up to ~20 % lower or higher: another vocal tract),
its F0 moved and stretched, and its aperiodicity shifted gives a new vocoded voice per chapter
reading the same, already normalized, transcript.

`asr revoice SRC... --out DEST --hours H` picks whole chapters of SRC at random (seeded) until H hours,
writes each as a new speaker in LibriSpeech layout (`DEST/<speaker>/<chapter>/*.flac` + `.trans.txt`)
and lists the voice changes in `DEST/SPEAKERS.tsv`. Resumable: existing flacs are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import Utterance, load_manifest
from ..utils import atomic_path, atomic_write

FRAME_PERIOD_MS = 5.0  # WORLD's default analysis step
PEAK = 0.9  # output peak cap (the source's own peak when lower)
SPEAKER_BASE = 9000  # new speakers are 9000, 9001, ...: apart from asr synth's ids (1000 + voice index)


def _pyworld():
    # pyworld 0.3.5 reads its version with pkg_resources, which setuptools >= 81 no longer ships;
    # it only needs an object answering get_distribution().version.
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            sys.modules["pkg_resources"] = types.SimpleNamespace(
                get_distribution=lambda name: types.SimpleNamespace(version="unknown"))
    try:
        import pyworld
    except ImportError:
        raise SystemExit("asr revoice needs pyworld: pip install -e '.[revoice]'") from None
    return pyworld


@dataclass(frozen=True)
class VoiceChange:
    formant_warp: float  # spectral envelope: new[f] = old[f / warp]; > 1 raises the formants
    f0_factor: float  # the utterance's mean log-F0 moves by this factor
    f0_spread: float  # F0 excursions around that mean are scaled by this (intonation range)
    aperiodicity_shift: float  # added to WORLD's 0..1 aperiodicity (breathier when > 0)

    @classmethod
    def draw(cls, seed: int, speaker: str, chapter: str) -> "VoiceChange":
        # The seed string is the repr of the (speaker, chapter) pair, as in the run behind README's numbers.
        r = random.Random(f"{seed}-{(speaker, chapter)!r}")
        return cls(r.uniform(0.82, 1.2), r.uniform(0.7, 1.45), r.uniform(0.6, 1.4), r.uniform(-0.1, 0.15))


def warp_envelope(envelope: np.ndarray, warp: float) -> np.ndarray:
    """(frames, bins) spectral envelope on linear bins 0..fs/2 -> new[f] = old[f / warp] (linear interpolation)."""
    bins = envelope.shape[1]
    src = np.clip(np.arange(bins) / warp, 0, bins - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, bins - 1)
    w = src - lo
    return envelope[:, lo] * (1 - w) + envelope[:, hi] * w


def revoice(audio: np.ndarray, sample_rate: int, change: VoiceChange) -> np.ndarray:
    """Mono float audio -> the same words in the changed voice (float32, same rate, peak like the source's, <= 0.9)."""
    pw = _pyworld()
    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, t = pw.dio(x, sample_rate, frame_period=FRAME_PERIOD_MS)
    f0 = pw.stonemask(x, f0, t, sample_rate)
    envelope = pw.cheaptrick(x, f0, t, sample_rate)
    aperiodicity = pw.d4c(x, f0, t, sample_rate)
    voiced = f0 > 0
    if voiced.any():
        log_f0 = np.log(f0[voiced])
        mean = log_f0.mean()
        f0[voiced] = np.exp(mean + np.log(change.f0_factor) + change.f0_spread * (log_f0 - mean))
    envelope = warp_envelope(envelope, change.formant_warp)
    aperiodicity = np.clip(aperiodicity + change.aperiodicity_shift, 0.0, 1.0)
    y = pw.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(envelope),
                      np.ascontiguousarray(aperiodicity), sample_rate, FRAME_PERIOD_MS)
    peak = np.abs(y).max()
    if peak > 0:
        y = y / peak * min(PEAK, float(np.abs(x).max()))
    return y.astype(np.float32)


@dataclass
class Chapter:
    speaker: str  # the new speaker id
    chapter: str
    source_speaker: str
    change: VoiceChange
    utterances: list[Utterance]

    def folder(self, root: Path) -> Path:
        return root / self.speaker / self.chapter

    def uid(self, index: int) -> str:
        return f"{self.speaker}-{self.chapter}-{index:04d}"


def plan(utterances: Sequence[Utterance], hours: float, seed: int = 0) -> list[Chapter]:
    """Whole source chapters in a seeded random order until `hours` of source audio, one new voice each."""
    by_chapter: dict[tuple[str, str], list[Utterance]] = {}
    for u in utterances:
        by_chapter.setdefault((u.speaker, Path(u.path).parent.name), []).append(u)
    keys = sorted(by_chapter)
    random.Random(seed).shuffle(keys)
    chapters, total = [], 0.0
    for i, (speaker, chapter) in enumerate(keys):
        if total >= hours * 3600:
            break
        utts = sorted(by_chapter[speaker, chapter], key=lambda u: u.id)
        chapters.append(Chapter(str(SPEAKER_BASE + i), chapter, speaker, VoiceChange.draw(seed, speaker, chapter), utts))
        total += sum(u.duration for u in utts)
    return chapters


def _revoice_chapter(args: tuple[Chapter, str]) -> tuple[str, float, list[str]]:
    """Worker: one chapter -> (speaker, seconds written, warnings). Existing flacs are kept (resume)."""
    import soundfile as sf

    chapter, root = args
    folder = chapter.folder(Path(root))
    lines, seconds, warnings = [], 0.0, []
    for j, u in enumerate(chapter.utterances):
        path = folder / f"{chapter.uid(j)}.flac"
        if not path.exists():
            try:
                audio, rate = sf.read(u.path, dtype="float32", always_2d=True)
                y = revoice(audio.mean(axis=1), rate, chapter.change)
            except Exception as e:  # one bad source file must not stop the corpus
                warnings.append(f"{u.path}: {type(e).__name__}: {e}")
                continue
            with atomic_path(path) as tmp:
                sf.write(str(tmp), y, rate, format="FLAC", subtype="PCM_16")
        seconds += sf.info(str(path)).duration
        lines.append(f"{chapter.uid(j)} {u.text.upper()}\n")
    if lines:  # written last: the transcript lists exactly the flacs that exist
        with atomic_write(folder / f"{chapter.speaker}-{chapter.chapter}.trans.txt") as f:
            f.write("".join(lines))
    return chapter.speaker, seconds, warnings


def write_speakers(path: Path, chapters: Sequence[Chapter]) -> None:
    fields = [f.name for f in dataclasses.fields(VoiceChange)]
    with atomic_write(path) as f:
        f.write("\t".join(["speaker", "source_speaker", "chapter", *fields]) + "\n")
        for c in chapters:
            values = [f"{getattr(c.change, name):.4f}" for name in fields]
            f.write("\t".join([c.speaker, c.source_speaker, c.chapter, *values]) + "\n")


def generate(out: Path, chapters: Sequence[Chapter], jobs: int = 1) -> tuple[float, int]:
    """Revoice `chapters` into `out` with `jobs` processes -> (seconds of audio, failed utterances)."""
    import multiprocessing

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out.mkdir(parents=True, exist_ok=True)
    write_speakers(out / "SPEAKERS.tsv", chapters)
    seconds, failed, t0 = 0.0, 0, time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(max(1, jobs)) as pool, \
            Progress(TextColumn("revoice"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[audio]}"),
                     TimeRemainingColumn()) as bar:
        task = bar.add_task("revoice", total=len(chapters), audio="")
        for _, secs, warnings in pool.imap_unordered(_revoice_chapter, [(c, str(out)) for c in chapters]):
            for w in warnings:
                bar.console.print(f"asr revoice: warning: {w}", markup=False, highlight=False)
            failed += len(warnings)
            seconds += secs
            wall = time.perf_counter() - t0
            bar.update(task, advance=1, audio=f"{seconds / 3600:.2f} h audio, {seconds / wall:.1f}x real time")
    return seconds, failed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", help="LibriSpeech-layout folders or manifests to take voices' audio from")
    p.add_argument("--out", required=True, help="new corpus folder (LibriSpeech layout + SPEAKERS.tsv)")
    p.add_argument("--hours", type=float, default=2.0, help="source audio to revoice, in whole chapters (default 2)")
    p.add_argument("--seed", type=int, default=0, help="chapter choice and voice changes (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")


def run(args: argparse.Namespace) -> int:
    _pyworld()  # fail before planning when it is missing
    try:
        utterances = load_manifest([str(s) for s in args.sources])
        if not utterances:
            raise ValueError(f"no usable utterances in {', '.join(map(str, args.sources))}")
    except (OSError, ValueError) as e:
        print(f"asr revoice: error: {e}", file=sys.stderr)
        return 2
    chapters = plan(utterances, args.hours, args.seed)
    seconds, failed = generate(Path(args.out), chapters, args.jobs)
    print(f"{args.out}: {len(chapters)} voices, {seconds / 3600:.2f} h"
          + (f"; {failed} utterances failed (warnings above)" if failed else ""))
    return 1 if failed and seconds == 0 else 0
