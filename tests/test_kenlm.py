"""KenLM LM building (asr.training.kenlm): text reading, held-out sentence exclusion, vocabulary caps, and
beam decoding with a binary LM + its word list. The end-to-end tests need lmplz/build_binary/query already
built (`python -m asr.training.kenlm tools`, ~2 min) and are skipped otherwise."""

from __future__ import annotations

import gzip
import json
import lzma
from collections import Counter

import pytest

from asr.decoding import BeamSearchDecoder
from asr.lm import KENLM_BINARY_MAGIC, is_kenlm_binary, lm_vocabulary, words_path
from asr.tokenizer import DEFAULT_VOCAB, Tokenizer, normalize_text
from asr.training import kenlm
from asr.training.lm import build_arpa
from conftest import one_hot_logits

CORPUS = ["The cat sat on the mat.", "the dog sat on the log", "A cat ate the rat!", "open the door please",
          "Don't open the door", "the cat sat", "Front   left", "the dog ate the cat"] * 3


def spelled(text: str) -> list[int]:
    ids = []
    for i in Tokenizer().encode(text):
        ids += [i, 0]
    return ids


def test_fast_normalization_matches_normalize_text():
    for line in ["the cat sat", "don't stop", "Hello, World!", "'quoted' words", "a  b", "it's o'clock\n",
                 "café au lait", "rock-n-roll", "", "  ", "'tis", "x'"]:
        assert kenlm.normalize_line(line) == normalize_text(line), line


def test_sources_of_every_kind_are_read_and_normalized(tmp_path):
    (tmp_path / "a.txt").write_text("Hello, World!\n\nsecond line\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("Gzipped Line\n")
    with lzma.open(tmp_path / "c.txt.xz", "wt") as f:
        f.write("xz line\n")
    (tmp_path / "d.jsonl").write_text(json.dumps({"path": "x.wav", "text": "From A Manifest."}) + "\n\n")
    chapter = tmp_path / "ls" / "1" / "2"
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 LIBRI SPEECH LINE\n1-2-0001 ANOTHER ONE\n")
    got = [s for src in ["a.txt", "b.txt.gz", "c.txt.xz", "d.jsonl", "ls"] for s in kenlm.iter_sentences(tmp_path / src)]
    assert got == ["hello world", "second line", "gzipped line", "xz line", "from a manifest",
                   "libri speech line", "another one"]
    with pytest.raises(FileNotFoundError):
        list(kenlm.iter_sentences(tmp_path / "missing.txt"))
    (tmp_path / "bad.jsonl").write_text('{"path": "x.wav"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        list(kenlm.iter_sentences(tmp_path / "bad.jsonl"))


def test_exclusion_drops_exact_normalized_matches_only(tmp_path):
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in ["The cat sat.", "yes"]))
    (tmp_path / "test.txt").write_text("OPEN the door, please\nthe cat sat\n")
    excluded = kenlm.read_exclusions([tmp_path / "dev.jsonl", tmp_path / "test.txt"])
    assert excluded == {str(tmp_path / "dev.jsonl"): {"the cat sat", "yes"},
                        str(tmp_path / "test.txt"): {"open the door please", "the cat sat"}}
    stats = Counter()
    lines = ["the cat sat", "the cat sat on the mat", "open the door please", "yes", "yes please", "the cat sat"]
    kept = list(kenlm.filter_sentences(lines, excluded, stats))
    assert kept == ["the cat sat on the mat", "yes please"]  # only whole-sentence matches go
    assert stats["kept"] == 2 and stats["excluded"] == 4
    assert stats[f"excluded:{tmp_path / 'dev.jsonl'}"] == 3  # "the cat sat" twice + "yes"
    assert stats[f"excluded:{tmp_path / 'test.txt'}"] == 3  # a line in both sources counts for both
    # Short held-out sentences (command words shared with training transcripts) can be kept.
    assert kenlm.read_exclusions([tmp_path / "dev.jsonl"], min_words=2) == {str(tmp_path / "dev.jsonl"): {"the cat sat"}}


def test_vocabulary_caps():
    counts = Counter({"the": 5, "cat": 3, "dog": 3, "rat": 1, "mat": 2})
    assert kenlm.choose_vocabulary(counts) == ["the", "cat", "dog", "mat", "rat"]  # ties alphabetical
    assert kenlm.choose_vocabulary(counts, min_count=2) == ["the", "cat", "dog", "mat"]
    assert kenlm.choose_vocabulary(counts, min_count=2, size=2) == ["the", "cat"]
    # included words (a dictionary, the training transcripts) stay if the text has them at all
    assert kenlm.choose_vocabulary(counts, min_count=3, include=["rat", "zebra", "the"]) == ["the", "cat", "dog", "rat"]


def test_build_lm_checks_prune_thresholds(tmp_path):
    with pytest.raises(ValueError, match="unigrams"):
        kenlm.build_lm([], tmp_path / "lm.bin", prune=[1, 1], tools={})
    with pytest.raises(ValueError, match="non-decreasing"):
        kenlm.build_lm([], tmp_path / "lm.bin", prune=[0, 2, 1], tools={})


def test_lm_vocabulary_of_arpa_and_of_binary_word_list(tmp_path):
    build_arpa(["the cat sat", "a dog"], tmp_path / "lm.arpa", 2)
    assert not is_kenlm_binary(tmp_path / "lm.arpa")
    assert sorted(lm_vocabulary(tmp_path / "lm.arpa")) == ["a", "cat", "dog", "sat", "the"]
    assert kenlm.arpa_unigrams(tmp_path / "lm.arpa")[0][0] in ("a", "cat", "dog", "sat", "the")
    assert kenlm.arpa_counts(tmp_path / "lm.arpa")[0] == 8  # 5 words, <s>, </s>, <unk>
    fake = tmp_path / "fake.bin"  # header only: lm_vocabulary never opens the LM itself
    fake.write_bytes(KENLM_BINARY_MAGIC + b" format version 5\n\0")
    assert is_kenlm_binary(fake) and words_path(fake) == tmp_path / "fake.words.txt"
    with pytest.raises(ValueError, match="fake.words.txt"):
        lm_vocabulary(fake)
    with pytest.raises(ValueError, match="fake.words.txt"):  # the decoder says the same, in one line
        BeamSearchDecoder(DEFAULT_VOCAB, str(fake))
    words_path(fake).write_text("the\n<unk>\ncat\n\n</s>\n")
    assert lm_vocabulary(fake) == ["the", "cat"]


@pytest.fixture(scope="module")
def tools():
    try:
        return kenlm.ensure_kenlm_tools(tools=kenlm.TOOLS, build=False)
    except kenlm.KenLMError as e:
        pytest.skip(f"{e} (python -m asr.training.kenlm tools builds them)")


def test_binary_lm_end_to_end(tmp_path, tools):
    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    (tmp_path / "dev.jsonl").write_text(json.dumps({"text": "Don't open the door!"}) + "\n")
    lm = tmp_path / "lm.bin"
    info = kenlm.build_lm([tmp_path / "corpus.txt"], lm, order=3, prune=[0], exclude=[tmp_path / "dev.jsonl"],
                          tools=tools, log=lambda m: None)
    assert info["sentences"] == 21 and info["excluded"] == 3 and info["discount_fallback"]
    assert info["exclude"][str(tmp_path / "dev.jsonl")]["removed"][str(tmp_path / "corpus.txt")] == 3
    assert is_kenlm_binary(lm) and info["bytes"] == lm.stat().st_size
    words = lm_vocabulary(lm)
    assert words[0] == "the" and "don't" not in words  # most probable first; excluded text left no trace
    assert sorted(words) == sorted({w for s in CORPUS for w in normalize_text(s).split()} - {"don't"})
    assert json.loads(kenlm.build_info_path(lm).read_text())["ngrams"] == info["ngrams"]
    assert not list(tmp_path.glob(".lm.bin*"))  # no temp files left

    decoder = BeamSearchDecoder(DEFAULT_VOCAB, str(lm), lm_weight=1.0)
    assert decoder.decode(one_hot_logits(spelled("open the door please"))).text == "open the door please"
    # "dor" is no word of the LM: the lexicon search must spell a known word
    assert decoder.decode(one_hot_logits(spelled("open the dor"))).text in ("open the door", "open the dog")

    ppl = kenlm.perplexity(lm, ["the cat sat on the mat", "the zebra sat"], tools)
    assert ppl["oov"] == 1 and ppl["tokens"] == 6 + 3 + 2 and ppl["oov_rate"] == pytest.approx(1 / 9)
    assert 1 < ppl["perplexity_no_oov"] < ppl["perplexity"]


def test_vocabulary_cap_and_arpa_output(tmp_path, tools):
    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    out = tmp_path / "lm.arpa"
    (tmp_path / "dict.txt").write_text("Rat\nzebra\n")
    rc = kenlm.main(["build", str(tmp_path / "corpus.txt"), "-o", str(out), "--order", "2", "--prune", "0",
                     "--vocab-size", "4", "--vocab-include", str(tmp_path / "dict.txt"), "--arpa"])
    assert rc == 0 and not words_path(out).exists()
    # the 4 most frequent words (the 10x, cat 4x, sat 3x, then ties at 2x alphabetically: ate), plus the
    # included word the text has (rat; zebra is not in the text, so not in the LM)
    assert sorted(lm_vocabulary(out)) == ["ate", "cat", "rat", "sat", "the"]
    decoder = BeamSearchDecoder(DEFAULT_VOCAB, str(out))
    assert decoder.decode(one_hot_logits(spelled("the cat"))).text == "the cat"


def test_asr_lm_build_kenlm_command(tmp_path, tools, capsys):
    from asr.apps.cli import main

    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    (tmp_path / "test.txt").write_text("the cat sat\n")
    out = tmp_path / "my.bin"
    assert main(["lm", "build", "--kenlm", str(tmp_path / "corpus.txt"), "-o", str(out), "--order", "3",
                 "--prune", "0", "--exclude", str(tmp_path / "test.txt")]) == 0
    assert "21 sentences kept, 3 excluded" in capsys.readouterr().out
    assert is_kenlm_binary(out) and "the" in lm_vocabulary(out)


def test_asr_lm_build_pure_python_excludes_held_out_sentences(tmp_path):
    from asr.apps.cli import main

    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    (tmp_path / "test.txt").write_text("A cat ate the rat\n")  # the only sentence with "rat" and "ate"
    out = tmp_path / "my.arpa"
    assert main(["lm", "build", str(tmp_path / "corpus.txt"), "-o", str(out), "--exclude",
                 str(tmp_path / "test.txt")]) == 0
    words = lm_vocabulary(out)
    assert "rat" not in words and "cat" in words
