"""Word and character error rates (jiwer) of a model over a corpus, with per-utterance errors."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import jiwer
import torch

from .decoding import greedy_decode
from .features import LogMel, batch_lengths
from .model import AcousticModel


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
def recognize_batches(model: AcousticModel, batches: Iterable[Optional[dict]]) -> Iterable[tuple[str, str, str]]:
    """Greedy-decodes collated batches; yields (id, reference, hypothesis)."""
    model.eval()
    logmel = LogMel(model.config.n_mels)
    for batch in batches:
        if batch is None:
            continue
        feats = logmel(batch["waveforms"])
        logits, out_lengths, _ = model(feats, batch_lengths(batch["waveform_lengths"]), exact_final_state=False)
        for i in range(logits.shape[0]):
            hyp = greedy_decode(logits[i, : out_lengths[i]], model.config.vocab).text
            yield batch["ids"][i], batch["texts"][i], hyp


def write_jsonl_atomic(rows: Iterable[dict], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def evaluate(model: AcousticModel, sources: Sequence[str], output: Optional[Path] = None,
             batch_seconds: float = 200.0) -> ErrorRates:
    """Scores `model` on LibriSpeech-layout folders or jsonl manifests; optional per-utterance jsonl."""
    from .data import BucketingBatchSampler, SpeechDataset, collate, load_manifest

    utts = load_manifest(list(sources))
    if not utts:
        raise ValueError(f"no usable utterances in {', '.join(map(str, sources))}")
    dataset = SpeechDataset(utts, model.tokenizer)
    sampler = BucketingBatchSampler([u.duration for u in utts], batch_seconds, shuffle=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    rows = sorted(recognize_batches(model, loader))
    if output is not None:
        write_jsonl_atomic(({"id": i, "ref": r, "hyp": h, **utterance_errors(r, h)} for i, r, h in rows), output)
    return error_rates([r for _, r, _ in rows], [h for _, _, h in rows])


def print_summary(name: str, rates: ErrorRates) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=name)
    for col in ("utterances", "words", "WER %", "CER %"):
        table.add_column(col, justify="right")
    table.add_row(str(rates.utterances), str(rates.words), f"{100 * rates.wer:.2f}", f"{100 * rates.cer:.2f}")
    Console().print(table)
