"""Word and character error rates (jiwer) of a model over a corpus, with per-utterance errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import jiwer
import numpy as np
import torch

from ..decoding import BeamSearchDecoder, greedy_decode
from ..features import SAMPLE_RATE, LogMel, batch_lengths
from ..model import AcousticModel
from ..tokenizer import normalize_text
from ..utils import atomic_write


@dataclass
class ErrorRates:
    wer: float
    cer: float
    words: int
    chars: int
    utterances: int

    def as_dict(self) -> dict:
        return {"wer": self.wer, "cer": self.cer, "words": self.words, "chars": self.chars,
                "utterances": self.utterances}


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorRates:
    """Corpus-level WER/CER: total edits over total reference words/characters."""
    if len(references) != len(hypotheses):
        raise ValueError("references and hypotheses differ in length")
    pairs = [(r, h) for r, h in zip(references, hypotheses) if r.strip()]
    if not pairs:
        raise ValueError("no non-empty references to score")
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    n_words = sum(len(r.split()) for r in refs)
    n_chars = sum(len(r) for r in refs)
    return ErrorRates(wer=words.wer, cer=chars.cer, words=n_words, chars=n_chars, utterances=len(refs))


def utterance_errors(reference: str, hypothesis: str) -> dict:
    if not reference.strip():
        return {"wer": float(bool(hypothesis.strip())), "errors": len(hypothesis.split()), "ref_words": 0}
    out = jiwer.process_words(reference, hypothesis)
    errors = out.substitutions + out.deletions + out.insertions
    return {"wer": out.wer, "errors": errors, "ref_words": len(reference.split()),
            "sub": out.substitutions, "del": out.deletions, "ins": out.insertions}


@torch.inference_mode()
def recognize_batches(model: AcousticModel, batches: Iterable[Optional[dict]],
                      decoder: Optional[BeamSearchDecoder] = None) -> Iterable[tuple[str, str, str, str]]:
    """Decodes collated batches; yields (id, reference, hypothesis, greedy hypothesis). The hypothesis is
    `decoder`'s (a BeamSearchDecoder) when given, else the greedy one: greedy costs nothing more."""
    model.eval()
    logmel = LogMel(model.config.n_mels)
    for batch in batches:
        if batch is None:
            continue
        feats = logmel(batch["waveforms"])
        logits, out_lengths, _ = model(feats, batch_lengths(batch["waveform_lengths"]), exact_final_state=False)
        for i in range(logits.shape[0]):
            utterance = logits[i, : out_lengths[i]]
            greedy = greedy_decode(utterance, model.config.vocab).text
            hyp = decoder.decode(utterance).text if decoder is not None else greedy
            yield batch["ids"][i], batch["texts"][i], hyp, greedy


def write_jsonl_atomic(rows: Iterable[dict], path: Path) -> None:
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def pocketsphinx_recognizer(cache: bool = True) -> Callable[[np.ndarray], str]:
    """PocketSphinx (PyPI `pocketsphinx`, its bundled en-us model and LM) as a peer to compare against.

    It runs at ~0.6 x real time here, so its transcripts are cached by audio content (`PeerCache`)."""
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")

    def recognize(waveform: np.ndarray) -> str:
        pcm = (np.clip(waveform, -1, 1) * 32767).astype(np.int16).tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        # Its dictionary marks alternates as word(2) and fillers as <sil>, [NOISE]: not words.
        words = [w for w in (hyp.hypstr.split() if hyp else []) if not w.startswith(("<", "["))]
        return normalize_text(" ".join(re.sub(r"\(\d+\)$", "", w) for w in words))

    if not cache:
        return recognize
    from importlib.metadata import version

    return PeerCache(recognize, f"pocketsphinx-{version('pocketsphinx')}")  # the module has no __version__


class PeerCache:
    """A peer recognizer's transcripts kept on disk by (peer, audio content): evaluating the same audio again
    costs nothing. `computed` tells whether the last call ran the recognizer (for an honest RTF)."""

    def __init__(self, recognize: Callable[[np.ndarray], str], name: str, directory: Optional[Path] = None):
        self.recognize, self.name = recognize, name
        self.directory = directory or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asr" / "peer"
        self.computed = False

    def __call__(self, waveform: np.ndarray) -> str:
        key = hashlib.sha256(np.ascontiguousarray(waveform, dtype=np.float32).tobytes()).hexdigest()
        path = self.directory / self.name / key[:2] / f"{key}.txt"
        if path.exists():
            self.computed = False
            return path.read_text(encoding="utf-8")
        text = self.recognize(waveform)
        self.computed = True
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as f:
                f.write(text)
        except OSError:
            pass  # a read-only cache only costs time
        return text


@dataclass
class Evaluation:
    rows: list[dict]  # id, speaker, ref, hyp (+ peer_hyp), per-utterance errors
    audio_seconds: float
    compute_seconds: float
    peer_compute_seconds: float = 0.0
    peer_audio_seconds: float = 0.0  # audio the peer actually ran on (the rest came from its cache)

    @property
    def wer(self) -> float:
        return self.rates().wer

    @property
    def cer(self) -> float:
        return self.rates().cer

    def rates(self, key: str = "hyp", rows: Optional[list[dict]] = None) -> ErrorRates:
        rows = self.rows if rows is None else rows
        return error_rates([r["ref"] for r in rows], [r[key] for r in rows])


def evaluate(model: AcousticModel, sources: Sequence[str], output: Optional[Path] = None,
             batch_seconds: float = 200.0, peer: Optional[Callable[[np.ndarray], str]] = None,
             decoder: Optional[BeamSearchDecoder] = None) -> Evaluation:
    """Scores `model` (and optionally a peer recognizer on the same audio) on LibriSpeech-layout
    folders or jsonl manifests, greedy and, with `decoder` (a BeamSearchDecoder), beam search too;
    optional per-utterance jsonl. Each row's `source` is its manifest's `source` field, else the
    name of the folder or manifest it came from."""
    from ..audio import load_audio
    from .data import BucketingBatchSampler, SpeechDataset, collate, load_manifest

    utts = []
    for source in sources:
        name = Path(source).stem if Path(source).is_file() else "/".join(Path(source).resolve().parts[-2:])
        utts += [dataclasses.replace(u, id=f"{len(utts) + i}:{u.id}", source=u.source or name)
                 for i, u in enumerate(load_manifest(source))]
    if not utts:
        raise ValueError(f"no usable utterances in {', '.join(map(str, sources))}")
    dataset = SpeechDataset(utts, model.tokenizer)
    sampler = BucketingBatchSampler([u.duration for u in utts], batch_seconds, shuffle=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    t0 = time.perf_counter()
    hyps = {i: (r, h, g) for i, r, h, g in recognize_batches(model, loader, decoder)}
    ours = time.perf_counter() - t0  # includes decoding the audio files, as a user's run would
    rows, peer_seconds, peer_audio = [], 0.0, 0.0
    for u in utts:
        if u.id not in hyps:
            continue  # failed to load; already reported
        ref, hyp, greedy = hyps[u.id]
        row = {"id": u.id.partition(":")[2], "source": u.source, "speaker": u.speaker, "ref": ref, "hyp": hyp,
               **utterance_errors(ref, hyp)}
        if decoder is not None:
            row["greedy_hyp"] = greedy
        if peer is not None:
            wav = load_audio(u.path)
            t0 = time.perf_counter()
            row["peer_hyp"] = peer(wav)
            if getattr(peer, "computed", True):  # cached transcripts cost no time and no audio for the RTF
                peer_seconds += time.perf_counter() - t0
                peer_audio += wav.size / SAMPLE_RATE
            row["peer_errors"] = utterance_errors(ref, row["peer_hyp"])["errors"]
        rows.append(row)
    if not rows:  # every file failed to load (each already reported): nothing to score
        raise ValueError(f"none of the {len(utts)} utterances in {', '.join(map(str, sources))} could be read")
    if output is not None:
        write_jsonl_atomic(rows, output)
    audio = sum(u.duration for u in utts if u.id in hyps)
    return Evaluation(rows, audio, ours, peer_seconds, peer_audio)


def speaker_groups(spec: str) -> dict[str, str]:
    """`SPEAKERS.tsv:column` -> {speaker id: value of that column} (e.g. the TTS engine)."""
    path, _, column = spec.rpartition(":")
    if not path:
        raise ValueError(f"{spec}: expected FILE.tsv:COLUMN")
    lines = Path(path).read_text().splitlines()
    header = lines[0].split("\t")
    if column not in header:
        raise ValueError(f"{path}: no column {column!r} (has {', '.join(header)})")
    k = header.index(column)
    return {cols[0]: cols[k] for cols in (line.split("\t") for line in lines[1:]) if len(cols) > k}


def print_summary(title: str, ev: Evaluation, groups: Union[None, str, dict[str, str]] = None,
                  peer_name: str = "") -> None:
    """A table of WER/CER per group: `groups` is "source" (each row's corpus) or {speaker: group}.
    Greedy, beam search (when the evaluation had a decoder) and the peer recognizer side by side."""
    from rich.console import Console
    from rich.table import Table

    beam = any("greedy_hyp" in r for r in ev.rows)
    columns = [("greedy_hyp", "greedy"), ("hyp", "beam+LM")] if beam else [("hyp", "")]
    if peer_name:
        columns.append(("peer_hyp", peer_name))
    table = Table(title=title)
    for col in ("set", "utterances", "words"):
        table.add_column(col, justify="right")
    for _, label in columns:
        table.add_column(f"{label} WER %".strip(), justify="right")
        table.add_column(f"{label} CER %".strip(), justify="right")

    def add(name: str, rows: list[dict]) -> None:
        cells = [name, str(len(rows)), str(sum(len(r["ref"].split()) for r in rows))]
        for key, _ in columns:
            r = ev.rates(key, rows)
            cells += [f"{100 * r.wer:.2f}", f"{100 * r.cer:.2f}"]
        table.add_row(*cells)

    if groups:
        group_of = (lambda r: r.get("source") or "?") if groups == "source" else \
            (lambda r: groups.get(r["speaker"], "?"))  # type: ignore[union-attr]
        for name in sorted({group_of(r) for r in ev.rows}):
            add(name, [r for r in ev.rows if group_of(r) == name])
    add("all", ev.rows)
    console = Console()
    if not console.is_terminal:  # files and pipes: don't wrap the table at rich's default 80 columns
        console = Console(width=200)
    console.print(table)
    line = f"audio {ev.audio_seconds:.1f} s; asr RTF {ev.compute_seconds / max(ev.audio_seconds, 1e-9):.4f}"
    if peer_name:
        if ev.peer_audio_seconds:
            line += f"; {peer_name} RTF {ev.peer_compute_seconds / ev.peer_audio_seconds:.4f}"
        if ev.peer_audio_seconds < ev.audio_seconds - 1e-6:
            line += f" ({peer_name} transcripts of {ev.audio_seconds - ev.peer_audio_seconds:.1f} s from its cache)"
    print(line)
