import torch

from asr.decoding import GreedyDecoder, greedy_decode, words
from asr.tokenizer import DEFAULT_VOCAB, Tokenizer, normalize_text
from conftest import one_hot_logits


def test_greedy_collapses_repeats_and_drops_blanks():
    tok = Tokenizer()
    a, b, sp = tok.encode("a")[0], tok.encode("b")[0], 1
    # a a _ a b b _ _ ' ' b  ->  "aab b"
    seq = [a, a, 0, a, b, b, 0, 0, sp, b]
    hyp = greedy_decode(one_hot_logits(seq), DEFAULT_VOCAB)
    assert hyp.text == "aab b"
    assert hyp.frames == [0, 3, 4, 8, 9]


def test_chunked_greedy_equals_whole():
    torch.manual_seed(0)
    logits = torch.randn(100, len(DEFAULT_VOCAB))
    whole = greedy_decode(logits, DEFAULT_VOCAB)
    d = GreedyDecoder(DEFAULT_VOCAB)
    for piece in torch.split(logits, [1, 0, 7, 30, 62]):
        d.accept(piece)
    assert d.hypothesis() == whole


def test_word_times():
    tok = Tokenizer()
    ids = [0, 0] + tok.encode("hi") + [0, 0, 1, 0] + tok.encode("yo") + [0]
    hyp = greedy_decode(one_hot_logits(ids), DEFAULT_VOCAB)
    w = words(hyp, DEFAULT_VOCAB, frame_shift=0.03)
    assert [x.text for x in w] == ["hi", "yo"]
    assert w[0].start == 0.06 and w[0].end == 0.12
    assert w[1].start == 0.24 and w[1].end == 0.30
    assert all(0.99 < x.confidence <= 1.0 for x in w)


def test_normalize_text():
    assert normalize_text("Hello, World!  It's   NAÏVE—café's \u2019quoted\u2019") == "hello world it's naive cafe's quoted"
    assert normalize_text("") == ""
