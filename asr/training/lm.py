"""n-gram language models for beam search: counting, interpolated modified Kneser-Ney, ARPA output, tuning.

`asr lm build` writes ARPA itself for small corpora (pure Python); large text goes through KenLM's `lmplz`
(asr/training/kenlm.py). KenLM (inside flashlight-text, used by the beam decoder) reads either.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from ..lm import BOS, EOS, LM_BEAM_SIZE, UNK, PathLike, settings_path
from ..tokenizer import normalize_text
from ..utils import atomic_write

# Chen & Goodman's usual values; used when a small corpus lacks the count-of-counts to estimate them
# (KenLM's --discount_fallback does the same).
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def read_sentences(sources: Sequence[PathLike]) -> Iterator[str]:
    """Normalized sentences from text files (one per line) and LibriSpeech-layout folders (*.trans.txt,
    first field of each line is the utterance id)."""
    for source in sources:
        source = Path(source)
        if source.is_dir():
            for trans in sorted(source.rglob("*.trans.txt")):
                for line in trans.read_text(encoding="utf-8", errors="replace").splitlines():
                    parts = line.split(maxsplit=1)
                    if len(parts) == 2 and (text := normalize_text(parts[1])):
                        yield text
        elif source.is_file():
            with open(source, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if text := normalize_text(line):
                        yield text
        else:
            raise FileNotFoundError(f"{source}: no such file or folder")


def _discounts(counts: Iterable[int]) -> tuple[float, float, float]:
    n = Counter(c for c in counts if c <= 4)
    n1, n2, n3, n4 = (n[k] for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return FALLBACK_DISCOUNTS
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    # Estimates outside (0, k) come from degenerate corpora (e.g. every sentence repeated): fall back.
    if not all(0 < dk < k for k, dk in zip((1, 2, 3), d)):
        return FALLBACK_DISCOUNTS
    return d


def build_arpa(sentences: Iterable[str], path: PathLike, order: int = 3) -> dict:
    """Interpolated modified Kneser-Ney n-gram model of space-separated words, written as ARPA.

    Lower orders use continuation counts (number of distinct left contexts), except n-grams starting
    with <s>, which have no left context and keep their real counts, as in KenLM.
    Returns {"order", "sentences", "words", "vocabulary", "ngrams": [count per order]}.
    """
    if order < 1:
        raise ValueError("order must be >= 1")
    grams: Counter = Counter()
    n_sentences = n_words = 0
    for sentence in sentences:
        toks = sentence.split()
        if not toks:
            continue
        n_sentences += 1
        n_words += len(toks)
        padded = [BOS] + toks + [EOS]
        for i in range(1, len(padded)):  # every n-gram ending at position i (nothing ends at <s>)
            grams[tuple(padded[max(0, i - order + 1): i + 1])] += 1
    if n_sentences == 0:
        raise ValueError("no text to build a language model from")
    # `grams` holds the full-length n-grams plus, from sentence starts, shorter ones beginning with <s>.
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    for gram, c in grams.items():
        raw[len(gram)][gram] += c
    adjusted: list[Counter] = [Counter() for _ in range(order + 1)]
    adjusted[order] = raw[order]
    for n in range(order - 1, 0, -1):
        adj: Counter = Counter()
        for gram in adjusted[n + 1]:  # continuation count: distinct words seen before the n-gram
            adj[gram[1:]] += 1
        adj.update(raw[n])  # n-grams starting with <s> have no left context: real counts
        adjusted[n] = adj
    # <s> never appears as a predicted word but needs a unigram entry (context of bigrams).
    vocab = sorted(g[0] for g in adjusted[1])

    probs: list[dict[tuple, float]] = [dict() for _ in range(order + 1)]
    backoffs: list[dict[tuple, float]] = [dict() for _ in range(order + 1)]
    for n in range(1, order + 1):
        d = _discounts(adjusted[n].values())
        by_context: dict[tuple, list[tuple[str, int]]] = defaultdict(list)
        for gram, c in adjusted[n].items():
            by_context[gram[:-1]].append((gram[-1], c))
        for context, followers in by_context.items():
            total = sum(c for _, c in followers)
            kinds = Counter(min(c, 3) for _, c in followers)
            gamma = (d[0] * kinds[1] + d[1] * kinds[2] + d[2] * kinds[3]) / total
            for word, c in followers:
                discounted = max(c - d[min(c, 3) - 1], 0.0) / total
                lower = 1.0 / (len(vocab) + 1) if n == 1 else _lookup(probs, backoffs, context[1:] + (word,))
                probs[n][context + (word,)] = discounted + gamma * lower
            if n == 1:
                probs[1][(UNK,)] = gamma / (len(vocab) + 1)  # the uniform share of the unseen word
            else:
                backoffs[n - 1][context] = gamma
    n_grams = [0] * (order + 1)
    path = Path(path)
    with atomic_write(path) as f:
        entries = []
        for n in range(1, order + 1):
            rows = []
            if n == 1:
                rows.append(f"-99\t{BOS}" + (_bo(backoffs[1].get((BOS,))) if order > 1 else ""))
            for gram in sorted(probs[n]):
                rows.append(f"{math.log10(probs[n][gram]):.6f}\t{' '.join(gram)}"
                            + (_bo(backoffs[n].get(gram)) if n < order else ""))
            n_grams[n] = len(rows)
            entries.append(rows)
        f.write("\\data\\\n")
        for n in range(1, order + 1):
            f.write(f"ngram {n}={n_grams[n]}\n")
        for n, rows in enumerate(entries, start=1):
            f.write(f"\n\\{n}-grams:\n")
            f.write("\n".join(rows) + "\n")
        f.write("\n\\end\\\n")
    return {"order": order, "sentences": n_sentences, "words": n_words, "vocabulary": len(vocab),
            "ngrams": n_grams[1:]}


def _bo(backoff: Optional[float]) -> str:
    return f"\t{math.log10(backoff):.6f}" if backoff else "\t0"


def _lookup(probs: list[dict], backoffs: list[dict], gram: tuple) -> float:
    """p(gram[-1] | gram[:-1]) with ARPA back-off semantics over the orders built so far."""
    weight = 1.0
    while gram:
        p = probs[len(gram)].get(gram)
        if p is not None:
            return weight * p
        weight *= backoffs[len(gram) - 1].get(gram[:-1], 1.0) if len(gram) > 1 else 1.0
        gram = gram[1:]
    return weight * probs[1][(UNK,)]


def save_settings(lm: PathLike, settings: dict) -> Path:
    path = settings_path(lm)
    with atomic_write(path) as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    return path


# ---------------------------------------------------------------- tuning and scoring on a corpus

def corpus_logits(model, sources: Sequence[PathLike], limit: Optional[int] = None) -> list[tuple[str, "object"]]:
    """(reference text, (T, V) logits) per utterance of LibriSpeech-layout folders or manifests.

    The model runs once; every decoder setting is then scored on the same logits.
    """
    import torch

    from ..audio import load_audio
    from .data import load_manifest
    from ..transcribe import batch_logits

    utts = load_manifest([str(s) for s in sources])
    if not utts:
        raise ValueError(f"no usable utterances in {', '.join(map(str, sources))}")
    if limit:
        utts = sorted(utts, key=lambda u: u.id)[:limit]
    with torch.inference_mode():
        return [(u.text, batch_logits(model, load_audio(u.path))) for u in utts]


def score_decoder(data: Sequence[tuple[str, "object"]], vocab: Sequence[str], decoder=None):
    """ErrorRates of greedy (decoder=None) or beam decoding of precomputed logits."""
    from ..decoding import greedy_decode
    from .evaluate import error_rates

    hyps = [decoder.decode(lg).text if decoder is not None else greedy_decode(lg, vocab).text for _, lg in data]
    return error_rates([ref for ref, _ in data], hyps)


def _score_setting(args: tuple) -> dict:
    """One grid point of tune(): decode the dev logits with one setting (in-process or in a worker)."""
    from ..decoding import BeamSearchDecoder

    data, vocab, lm, beam_size, (weight, bonus, silence) = args
    decoder = BeamSearchDecoder(vocab, lm, lm_weight=weight, word_score=bonus, silence_score=silence,
                                beam_size=beam_size)
    rates = score_decoder(data, vocab, decoder)
    return {"lm_weight": weight, "word_score": bonus, "silence_score": silence, "wer": rates.wer, "cer": rates.cer}


def _tune_worker_init(data: list, vocab: Sequence[str]) -> None:
    import torch

    global _TUNE_DATA
    _TUNE_DATA = (data, vocab)  # forked workers inherit initargs: the logits are not pickled
    torch.set_num_threads(1)  # one process per core already


def _score_forked(args: tuple) -> dict:
    return _score_setting(_TUNE_DATA + args)


def _log_row(log, row: dict) -> dict:
    log(f"{row['lm_weight']:>9g} {row['word_score']:>10g} {row['silence_score']:>7g} {100 * row['wer']:>7.2f} "
        f"{100 * row['cer']:>7.2f}")
    return row


def tune(model, lm: PathLike, sources: Sequence[PathLike], lm_weights: Sequence[float],
         word_scores: Sequence[float], beam_size: int = LM_BEAM_SIZE, limit: Optional[int] = None,
         log=print, metric: str = "wer", silence_scores: Sequence[float] = (0.0,), jobs: int = 1) -> dict:
    """Grid search of LM weight x word insertion score x silence score by dev-set WER (or CER: `metric`);
    saves the best next to the LM. The model runs once; `jobs` processes decode grid points in parallel
    (flashlight's search is single-threaded).

    Returns the saved settings: {"lm_weight", "word_score", "silence_score", "metric", "dev_wer", "dev_cer",
    "greedy_dev_wer", "greedy_dev_cer", "beam_size", "dev", "grid"}.
    """
    if metric not in ("wer", "cer"):
        raise ValueError(f"metric must be wer or cer, not {metric!r}")
    vocab = model.config.vocab
    data = corpus_logits(model, sources, limit)
    greedy = score_decoder(data, vocab)
    log(f"{len(data)} utterances, {greedy.words} words; greedy WER {100 * greedy.wer:.2f}%")
    log(f"{'lm_weight':>9} {'word_score':>10} {'silence':>7} {'WER %':>7} {'CER %':>7}")
    points = list(itertools.product(lm_weights, word_scores, silence_scores))
    if jobs > 1 and len(points) > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(min(jobs, len(points)), _tune_worker_init,
                                                       (data, vocab)) as pool:
            rows = pool.imap(_score_forked, [(str(lm), beam_size, p) for p in points])
            grid = [_log_row(log, r) for r in rows]
    else:
        grid = [_log_row(log, _score_setting((data, vocab, str(lm), beam_size, p))) for p in points]
    other = "cer" if metric == "wer" else "wer"
    best = min(grid, key=lambda r: (r[metric], r[other]))  # ties go to the better other rate
    settings = {"lm_weight": best["lm_weight"], "word_score": best["word_score"],
                "silence_score": best["silence_score"], "metric": metric, "dev_wer": best["wer"],
                "dev_cer": best["cer"], "greedy_dev_wer": greedy.wer, "greedy_dev_cer": greedy.cer,
                "beam_size": beam_size, "dev": [str(s) for s in sources], "grid": grid}
    path = save_settings(lm, settings)
    log(f"best by {metric.upper()}: lm_weight {best['lm_weight']:g}, word_score {best['word_score']:g}, "
        f"silence_score {best['silence_score']:g}: WER {100 * best['wer']:.2f}% CER {100 * best['cer']:.2f}% "
        f"(greedy {100 * greedy.wer:.2f}% / {100 * greedy.cer:.2f}%) -> {path}")
    return settings
