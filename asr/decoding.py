"""CTC decoding: greedy (best path) with the frame of every emitted character, word timing, and beam search
with an optional n-gram LM and hotwords (flashlight via torchaudio), word timing from forced alignment."""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from .lm import LM_BEAM_SIZE


@dataclass
class Word:
    text: str
    start: float  # seconds
    end: float
    confidence: float


@dataclass
class Hypothesis:
    text: str
    tokens: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)  # output step at which each token was emitted
    probs: list[float] = field(default_factory=list)  # posterior of each token at that step


class GreedyDecoder:
    """Best-path CTC decoding that can be fed logits in pieces: collapse repeats, drop blanks.

    Batch decoding is this same decoder fed the whole utterance at once.
    """

    def __init__(self, vocab: Sequence[str], blank: int = 0):
        self.vocab = list(vocab)
        self.blank = blank
        self.reset()

    def reset(self) -> None:
        self._previous = self.blank
        self._offset = 0
        self.tokens: list[int] = []
        self.frames: list[int] = []
        self.probs: list[float] = []

    def accept(self, logits: torch.Tensor) -> None:
        """logits: (T, V) for the next T output steps."""
        if logits.shape[0] == 0:
            return
        probs, best = logits.float().softmax(-1).max(-1)
        ids = best.tolist()
        for t, (tok, p) in enumerate(zip(ids, probs.tolist())):
            if tok != self.blank and tok != self._previous:
                self.tokens.append(tok)
                self.frames.append(self._offset + t)
                self.probs.append(p)
            self._previous = tok
        self._offset += len(ids)

    @property
    def text(self) -> str:
        return "".join(self.vocab[t] for t in self.tokens).strip()

    def hypothesis(self) -> Hypothesis:
        return Hypothesis(self.text, list(self.tokens), list(self.frames), list(self.probs))


def greedy_decode(logits: torch.Tensor, vocab: Sequence[str], blank: int = 0) -> Hypothesis:
    decoder = GreedyDecoder(vocab, blank)
    decoder.accept(logits)
    return decoder.hypothesis()


Delay = tuple[float, float]  # (start, end) seconds a model emits late; see asr.timing


def _word_times(first: float, last: float, time_offset: float, delay: Delay) -> tuple[float, float]:
    """Emission times -> word times: minus the model's calibrated delay, never before the audio starts."""
    start = max(time_offset, time_offset + first - delay[0])
    return round(start, 3), round(max(start, time_offset + last - delay[1]), 3)


def words(hyp: Hypothesis, vocab: Sequence[str], frame_shift: float, time_offset: float = 0.0,
          delay: Delay = (0.0, 0.0)) -> list[Word]:
    """Groups emitted characters into words; a word spans its first to its last character's step."""
    result: list[Word] = []
    chars: list[tuple[str, int, float]] = []

    def flush() -> None:
        if chars:
            start, end = _word_times(chars[0][1] * frame_shift, (chars[-1][1] + 1) * frame_shift, time_offset, delay)
            result.append(Word(
                text="".join(c for c, _, _ in chars), start=start, end=end,
                confidence=round(min(p for _, _, p in chars), 4),
            ))
            chars.clear()

    for tok, frame, p in zip(hyp.tokens, hyp.frames, hyp.probs):
        ch = vocab[tok]
        if ch == " ":
            flush()
        else:
            chars.append((ch, frame, p))
    flush()
    return result


# ---------------------------------------------------------------- beam search (flashlight via torchaudio)

SILENCE = "|"  # flashlight's word separator; our vocabulary's space maps to it


def flashlight_tokens(vocab: Sequence[str]) -> list[str]:
    """The model vocabulary as flashlight tokens: same indices, space -> "|" (blank keeps its name)."""
    return [SILENCE if t == " " else t for t in vocab]


def parse_hotwords(specs: Sequence[str], default_boost: float = 5.0) -> dict[str, float]:
    """["word", "word:3.5", ...] -> {word: boost}; words are normalized like transcripts."""
    from .tokenizer import normalize_text

    result: dict[str, float] = {}
    for spec in specs:
        word, _, boost = spec.rpartition(":") if ":" in spec else (spec, "", "")
        try:
            value = float(boost) if boost else default_boost
        except ValueError:
            raise ValueError(f"hotword {spec!r}: boost must be a number (WORD or WORD:BOOST)") from None
        text = normalize_text(word)
        if not text or " " in text:
            raise ValueError(f"hotword {spec!r}: must be a single word")
        result[text] = value
    return result


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silences C/C++ writes to file descriptor 2 (Python's sys.stderr object is not enough)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _boosted_lm(base, boosts: dict[int, float]):
    """A flashlight LM that adds a bonus when a hotword is completed, on top of the wrapped KenLM.

    The bonus is also part of the score the lexicon trie is smeared with, so partial hotwords survive
    pruning. States are the wrapped LM's own, so KenLM does all the n-gram work in C++.
    """
    from torchaudio.models.decoder import CTCDecoderLM

    class BoostedLM(CTCDecoderLM):
        def __init__(self) -> None:
            CTCDecoderLM.__init__(self)
            self.base = base  # kept alive here: flashlight holds only a raw pointer

        def start(self, start_with_nothing: bool):
            return self.base.start(start_with_nothing)

        def score(self, state, usr_token_idx: int):
            next_state, score = self.base.score(state, usr_token_idx)
            return next_state, score + boosts.get(usr_token_idx, 0.0)

        def finish(self, state):
            return self.base.finish(state)

    return BoostedLM()


def _lexicon_trie(decoder, words: Sequence[str], lm):
    """The lexicon trie torchaudio's ctc_decoder builds (each word spelled letter by letter + the word
    boundary token, scored by the LM's unigram, smeared with MAX), built again so forks can share it."""
    from torchaudio.models.decoder import _ctc_decoder as T

    lexicon = {w: [list(w) + [SILENCE]] for w in words}
    return T._construct_trie(decoder.tokens_dict, decoder.word_dict, lexicon, lm,
                             decoder.tokens_dict.get_index(SILENCE))


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (T, V) float32 scores, in numpy: the server calls it for every stream on
    every step with a few rows, and torch's kernel wakes its thread pool for each call (milliseconds each
    when the cores are busy); numpy stays in the calling thread. Row by row, so results do not depend on
    how an utterance was cut into pieces."""
    shifted = x - x.max(axis=-1, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return np.ascontiguousarray(out, dtype=np.float32)


class BeamSearchDecoder:
    """CTC beam search (flashlight's C++ decoder through torchaudio), batch or fed in pieces.

    - no LM: lexicon-free prefix beam search over characters (open vocabulary);
    - word n-gram LM (ARPA, or KenLM binary with its word list LM.words.txt beside it): lexicon decoding;
      the lexicon is the LM's vocabulary plus hotwords, spelled with the model's characters (words outside
      it cannot be output). Building it costs ~25 us per word (~2.5 s for 100k words).
    `accept`/`text`/`hypothesis` mirror GreedyDecoder so StreamingRecognizer can use either; the final
    result after any chunking equals decoding the whole utterance at once. `beam_size` defaults to
    LM_BEAM_SIZE with an LM and 32 without. `silence_score` is added at every word boundary (the space
    token): below 0 it makes the decoder less eager to split a stretch of letters into more words.
    """

    def __init__(self, vocab: Sequence[str], lm: Optional[str] = None, *, lm_weight: float = 0.5,
                 word_score: float = 0.0, silence_score: float = 0.0, beam_size: Optional[int] = None,
                 beam_threshold: float = 25.0, hotwords: Optional[dict[str, float]] = None,
                 lexicon_words: Optional[Sequence[str]] = None, blank: int = 0):
        from torchaudio.models.decoder import ctc_decoder

        self.vocab = list(vocab)
        self.blank = blank
        self.hotwords = dict(hotwords or {})
        tokens = flashlight_tokens(self.vocab)
        self._tmp = None
        self.beam_size = beam_size or (LM_BEAM_SIZE if lm is not None else 32)
        options = dict(tokens=tokens, beam_size=self.beam_size, beam_threshold=beam_threshold,
                       blank_token=tokens[blank], sil_token=SILENCE, sil_score=silence_score, nbest=1)
        if lm is None:
            if self.hotwords:
                raise ValueError("hotwords need a word language model (--lm)")
            self.lexicon = False
            self._decoder = ctc_decoder(lexicon=None, lm=None, **options)
        else:
            from flashlight.lib.text.decoder.kenlm import KenLM
            from flashlight.lib.text.dictionary import Dictionary

            from .lm import lm_vocabulary

            self.lexicon = True
            allowed = set(self.vocab) - {self.vocab[blank], " "}
            if lexicon_words is None:
                lexicon_words = lm_vocabulary(lm)  # ARPA unigrams, or a binary LM's LM.words.txt
            words = sorted({w for w in list(lexicon_words) + list(self.hotwords) if w and set(w) <= allowed})
            if not words:
                from .lm import lexicon_source

                raise ValueError(f"{lexicon_source(lm)}: no words spelled with the model's characters")
            self._tmp = tempfile.TemporaryDirectory(prefix="asr-lexicon-")
            lexicon = Path(self._tmp.name) / "lexicon.txt"
            lexicon.write_text("".join(f"{w}\t{' '.join(w)} {SILENCE}\n" for w in words))
            word_list = Path(self._tmp.name) / "words.txt"
            word_list.write_text("".join(f"{w}\n" for w in words + ["<unk>"]))
            word_dict = Dictionary(str(word_list))
            from .lm import is_kenlm_binary, verify_kenlm_binary

            if is_kenlm_binary(lm):
                verify_kenlm_binary(lm, word_list)
            try:
                with _quiet_stderr():  # KenLM prints a progress bar and a tip about binary files on every load
                    kenlm = KenLM(str(lm), word_dict)
            except RuntimeError as e:  # KenLM's message ends with the reason, after C++ source locations
                raise ValueError(f"{lm}: {str(e).strip().splitlines()[-1]}") from None
            # Boost is in decoder score units (natural-log acoustic scale): flashlight multiplies LM
            # scores by lm_weight, so divide here.
            scale = 1.0 / lm_weight if lm_weight > 0 else 1.0
            boosts = {word_dict.get_index(w): b * scale for w, b in self.hotwords.items()}
            lm_object = _boosted_lm(kenlm, boosts) if boosts else kenlm
            # torchaudio builds its trie from the lexicon it is given: give it one word (cheap), then run
            # the search on a trie of all words built here once, which forks of this decoder share.
            lexicon.write_text(lexicon.read_text().split("\n", 1)[0] + "\n")
            self._decoder = ctc_decoder(lexicon=str(lexicon), lm=lm_object, lm_dict=str(word_list),
                                        lm_weight=lm_weight, word_score=word_score, **options)
            self._kenlm = kenlm  # flashlight keeps raw pointers: keep the objects alive with the decoder
            self._lm_object = lm_object
            self._trie = _lexicon_trie(self._decoder, words, lm_object)
        self._options = dict(options, lm_weight=lm_weight, word_score=word_score)
        if self.lexicon:
            self._decoder.decoder = self._new_search()
        self.reset()

    def fork(self) -> "BeamSearchDecoder":
        """A new, independent search with the same settings that shares this decoder's lexicon trie and LM
        (both read-only while decoding). Building a decoder with a 70k-word lexicon takes seconds (the
        trie scores every word with the LM); a fork takes well under a millisecond, so a server gives
        every stream its own search without stalling the others."""
        new = copy.copy(self)
        new._decoder = copy.copy(self._decoder)  # shares the token/word dictionaries and the LM object
        new._decoder.decoder = self._new_search()
        new.reset()
        return new

    def _new_search(self):
        """A flashlight search object with this decoder's options (its state is the only thing not shared)."""
        from torchaudio.models.decoder import _ctc_decoder as T

        opts, d = self._options, self._decoder
        silence = d.tokens_dict.get_index(opts["sil_token"])
        if self.lexicon:
            options = T._LexiconDecoderOptions(
                beam_size=opts["beam_size"], beam_size_token=d.tokens_dict.index_size(),
                beam_threshold=opts["beam_threshold"], lm_weight=opts["lm_weight"], word_score=opts["word_score"],
                unk_score=float("-inf"), sil_score=opts["sil_score"], log_add=False,
                criterion_type=T._CriterionType.CTC)
            return T._LexiconDecoder(options, self._trie, self._lm_object, silence, d.blank,
                                     d.word_dict.get_index("<unk>"), [], False)
        options = T._LexiconFreeDecoderOptions(
            beam_size=opts["beam_size"], beam_size_token=d.tokens_dict.index_size(),
            beam_threshold=opts["beam_threshold"], lm_weight=opts["lm_weight"], sil_score=opts["sil_score"],
            log_add=False, criterion_type=T._CriterionType.CTC)
        return T._LexiconFreeDecoder(options, d.lm, silence, d.blank, [])

    # -- streaming interface (same as GreedyDecoder)
    def reset(self) -> None:
        self._decoder.decode_begin()
        self._ended = False
        self._steps = 0
        self._final: Optional[Hypothesis] = None

    def accept(self, logits: torch.Tensor) -> None:
        """logits: (T, V) raw model outputs for the next T steps."""
        if self._ended:
            raise RuntimeError("hypothesis() finalized this utterance; call reset() first")
        if logits.shape[0] == 0:
            return
        self._decoder.decode_step(torch.from_numpy(log_softmax(logits.detach().float().numpy())))
        self._steps += logits.shape[0]

    @property
    def text(self) -> str:
        """Best partial transcript so far (final once hypothesis() was called)."""
        if self._final is not None:
            return self._final.text
        if self._steps == 0:
            return ""
        # flashlight's own best-path query: the highest-scoring hypothesis, traced back to its last
        # complete word. get_final_hypothesis() would copy all beam entries (~15x slower, every partial
        # of every server stream) and lists them unsorted, so its first entry is not the best one.
        best = self._decoder.decoder.get_best_hypothesis()
        return self._to_text(self._decoder._to_hypo([best])[0])

    def hypothesis(self) -> Hypothesis:
        """Ends the utterance (adds the LM's end-of-sentence score) and returns the best result.

        Frames/probs are empty: use align_words() on the logits for timing and confidence.
        """
        if self._final is None:
            self._decoder.decode_end()
            self._ended = True
            best = self._decoder.get_final_hypothesis()
            text = self._to_text(best[0]) if best else ""
            index = {c: i for i, c in enumerate(self.vocab)}
            self._final = Hypothesis(text, [index[c] for c in text])
        return self._final

    def decode(self, logits: torch.Tensor) -> Hypothesis:
        """Whole-utterance decoding of (T, V) logits."""
        self.reset()
        self.accept(logits)
        return self.hypothesis()

    def _to_text(self, hyp) -> str:
        if self.lexicon:
            return " ".join(w for w in hyp.words if w != "<unk>")
        chars = "".join(self.vocab[int(t)] for t in hyp.tokens if int(t) != self.blank)
        return " ".join(chars.split())


def align_words(logits: torch.Tensor, text: str, vocab: Sequence[str], frame_shift: float,
                time_offset: float = 0.0, blank: int = 0, delay: Delay = (0.0, 0.0)) -> list[Word]:
    """Word times and confidences from a CTC forced alignment of `text` to (T, V) logits.

    `delay` is the model's calibrated emission delay (AcousticModel.word_delay), subtracted from times.
    A word spans its first character's first step to its last character's last step, counting only
    the steps around each character's peak, and extended over letters the model emits after it that
    the text lacks; its confidence is the mean posterior of its characters.
    Returns [] when the text cannot be aligned to the logits (too short).
    """
    import torchaudio.functional as F

    index = {c: i for i, c in enumerate(vocab)}
    ids = [index[c] for c in text if c in index and index[c] != blank]
    if not ids or logits.shape[0] == 0:
        return []
    log_probs = logits.float().log_softmax(-1)
    try:
        aligned, scores = F.forced_align(log_probs[None], torch.tensor([ids], dtype=torch.int32), blank=blank)
    except RuntimeError:  # more characters (+ repeats) than steps: the text cannot come from these logits
        return []
    probs = scores[0].exp()
    spans = F.merge_tokens(aligned[0], probs, blank=blank)
    result: list[Word] = []
    bounds = [(s.start, s.end) for s in spans]

    def core(k: int) -> tuple[int, int, float]:
        """The steps around character k's peak where it is at least half as likely as at the peak.

        Forced alignment may stretch a character over steps it merely wins against blank (e.g. silence
        the model never saw), or give steps where it is still likely to blank (CTC spikes are narrow):
        the region is grown from the peak on the character's own posterior, within its neighbours.
        """
        span = spans[k]
        own = log_probs[:, span.token].exp()
        peak = span.start + int(own[span.start:span.end].argmax())
        lo = bounds[k - 1][1] if k > 0 else 0
        hi = bounds[k + 1][0] if k + 1 < len(bounds) else len(own)
        first = last = peak
        while first > lo and own[first - 1] >= 0.5 * own[peak]:
            first -= 1
        while last + 1 < hi and own[last + 1] >= 0.5 * own[peak]:
            last += 1
        return first, last + 1, float(own[first:last + 1].mean())

    space = vocab.index(" ") if " " in vocab else -1
    letters = log_probs.argmax(-1)
    letters = (letters != blank) & (letters != space)  # steps where the model emits a letter

    def stray_end(end: int, limit: int, max_gap: int = 3) -> int:
        """Extends a word's end over letters the model emits after it that the text does not have.

        E.g. a long drawn-out "the" heard as "the ip": the speech is there, so the word ends after the
        "ip", not at the "e". Gaps of up to `max_gap` steps (blank or space) are bridged — inside the
        bundled model's greedy words on dev, 99.3 % of letter-to-letter gaps are <= 3 steps; `limit` is
        the next word's first step.
        """
        t, gap = end, 0
        while t < limit and gap <= max_gap:
            if letters[t]:
                end, gap = t + 1, 0
            else:
                gap += 1
            t += 1
        return end

    groups: list[list[int]] = [[]]  # character indices into spans, one list per word
    for k, span in enumerate(spans):
        if vocab[span.token] == " ":
            groups.append([])
        else:
            groups[-1].append(k)
    groups = [ks for ks in groups if ks]
    word_regions = [[core(k) for k in ks] for ks in groups]
    for i, (ks, regions) in enumerate(zip(groups, word_regions)):
        word_text = "".join(vocab[spans[k].token] for k in ks)
        limit = word_regions[i + 1][0][0] if i + 1 < len(groups) else len(letters)
        last = stray_end(regions[-1][1], limit)
        start, end = _word_times(regions[0][0] * frame_shift, last * frame_shift, time_offset, delay)
        result.append(Word(text=word_text, start=start, end=end,
                           confidence=round(sum(c for _, _, c in regions) / len(regions), 4)))
    return result


def beam_decode_speed(logits: torch.Tensor, vocab: Sequence[str], frame_shift: float,
                      beam_sizes: Sequence[int] = (8, 32, 128), lm: Optional[str] = None,
                      repeats: int = 3, **options) -> dict[int, float]:
    """Seconds of beam search per second of audio for each beam size (best of `repeats`), on (T, V) logits.

    Only the search is timed (the model's forward pass is not); lm/options as for BeamSearchDecoder.
    """
    import time

    audio_seconds = logits.shape[0] * frame_shift
    result: dict[int, float] = {}
    for beam in beam_sizes:
        decoder = BeamSearchDecoder(vocab, lm, beam_size=beam, **options)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            decoder.decode(logits)
            best = min(best, time.perf_counter() - start)
        result[beam] = best / audio_seconds
    return result
