"""Transcript files: txt/json/srt/vtt/tsv contents, segmentation, atomic per-input files from the CLI."""

from __future__ import annotations

import json
import re

import pytest

from asr.apps.cli import main
from asr.decoding import Word
from asr.output import FORMATS, LINE_CHARS, render, segment_words, wrap_lines, write_transcript

SRT_TIME = r"\d\d:\d\d:\d\d,\d\d\d"
VTT_TIME = r"\d\d:\d\d:\d\d\.\d\d\d"


def clock_seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def make_words(spec: list[tuple[str, float, float]]) -> list[Word]:
    return [Word(t, s, e, 0.9) for t, s, e in spec]


def long_talk() -> list[Word]:
    """Two sentences with a 1 s pause, then 30 s of evenly spoken words without pauses."""
    words = make_words([("hello", 0.5, 0.9), ("world", 1.0, 1.4), ("good", 2.4, 2.7), ("morning", 2.8, 3.3)])
    t = 4.0
    for i in range(75):
        words.append(Word(f"word{i}", round(t, 3), round(t + 0.3, 3), 0.8))
        t += 0.4
    return words


def test_segments_split_at_pauses_and_limits():
    segments = segment_words(long_talk())
    assert [s.text for s in segments[:2]] == ["hello world", "good morning"]  # the 1 s pause is an endpoint
    for s in segments:
        assert s.end - s.start <= 10.0 and len(s.text) <= 2 * LINE_CHARS
        assert s.start == s.words[0].start and s.end == s.words[-1].end
    assert sum(len(s.words) for s in segments) == 79  # every word exactly once, in order
    assert [w.text for s in segments for w in s.words] == [w.text for w in long_talk()]


def test_wrap_lines_balances_two_lines():
    text = "the quick brown fox jumps over the lazy dog and keeps running far"
    lines = wrap_lines(text)
    assert len(lines) == 2 and " ".join(lines) == text and all(len(x) <= LINE_CHARS for x in lines)
    assert wrap_lines("short") == ["short"]


def test_srt_format():
    srt = render("srt", "x", long_talk())
    cues = srt.strip().split("\n\n")
    assert len(cues) == len(segment_words(long_talk()))
    previous_end = 0.0
    for i, cue in enumerate(cues, start=1):
        lines = cue.split("\n")
        assert lines[0] == str(i)
        m = re.fullmatch(f"({SRT_TIME}) --> ({SRT_TIME})", lines[1])
        assert m, lines[1]
        start, end = clock_seconds(m[1]), clock_seconds(m[2])
        assert previous_end <= start < end
        previous_end = end
        assert 1 <= len(lines[2:]) <= 2 and all(0 < len(x) <= LINE_CHARS for x in lines[2:])
    assert cues[0].split("\n")[1] == "00:00:00,500 --> 00:00:01,400"


def test_vtt_format():
    vtt = render("vtt", "x", make_words([("hi", 3661.25, 3661.5)]))
    assert vtt.startswith("WEBVTT\n\n")
    assert "01:01:01.250 --> 01:01:01.500\nhi\n" in vtt
    for line in vtt.splitlines():
        if "-->" in line:
            assert re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", line)


def test_tsv_and_json_and_txt():
    words = make_words([("hello", 0.5, 0.9), ("world", 1.0, 1.4)])
    rows = [r.split("\t") for r in render("tsv", "hello world", words).splitlines()]
    assert rows == [["start", "end", "word", "confidence"], ["500", "900", "hello", "0.9000"],
                    ["1000", "1400", "world", "0.9000"]]
    doc = json.loads(render("json", "hello world", words))
    assert doc["text"] == "hello world"
    assert doc["words"] == [{"word": "hello", "start": 0.5, "end": 0.9, "confidence": 0.9},
                            {"word": "world", "start": 1.0, "end": 1.4, "confidence": 0.9}]
    assert doc["segments"] == [{"start": 0.5, "end": 1.4, "text": "hello world", "words": doc["words"]}]
    assert render("txt", "hello world", words) == "hello world\n"
    with pytest.raises(ValueError):
        render("docx", "x", words)


def test_write_transcript_is_atomic_and_named_after_input(tmp_path):
    path = write_transcript("json", "hi", make_words([("hi", 0, 0.2)]), "/some/where/talk.final.flac", tmp_path / "out")
    assert path == tmp_path / "out" / "talk.final.json"
    assert json.loads(path.read_text())["text"] == "hi"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["talk.final.json"]  # no temp files left


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_writes_one_file_per_input(overfit, tmp_path, capsys, fmt):
    wav = overfit["wav_paths"][1]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav")
    out = tmp_path / "out"
    code = main(["transcribe", str(wav), str(bad), "--no-lm", "--model", str(overfit["path"]), "--output-format", fmt,
                 "--output-dir", str(out)])
    assert code == 0  # one file worked
    assert capsys.readouterr().out == f"{wav}: {overfit['texts'][1]}\n"  # stdout as without --output-format
    assert sorted(p.name for p in out.iterdir()) == [f"{wav.stem}.{fmt}"]  # nothing for the bad input
    content = (out / f"{wav.stem}.{fmt}").read_text()
    words = overfit["texts"][1].split()
    if fmt == "json":
        doc = json.loads(content)
        assert doc["text"] == overfit["texts"][1] and [w["word"] for w in doc["words"]] == words
        assert all(0 <= w["start"] < w["end"] <= 2.5 and 0 < w["confidence"] <= 1 for w in doc["words"])
    elif fmt == "tsv":
        assert [r.split("\t")[2] for r in content.splitlines()[1:]] == words
    elif fmt in ("srt", "vtt"):
        assert " ".join(x for x in content.splitlines() if x and "-->" not in x and not x.isdigit()
                        and x != "WEBVTT") == overfit["texts"][1]
    else:
        assert content == overfit["texts"][1] + "\n"


def test_cli_streaming_output_matches_batch(overfit, tmp_path, capsys):
    wav = overfit["wav_paths"][0]
    for name, extra in (("batch", []), ("stream", ["--stream-chunk-ms", "130"])):
        assert main(["transcribe", str(wav), "--no-lm", "--model", str(overfit["path"]), "--beam-size", "8",
                     "--output-format", "json", "--output-dir", str(tmp_path / name)] + extra) == 0
    batch = json.loads((tmp_path / "batch" / f"{wav.stem}.json").read_text())
    stream = json.loads((tmp_path / "stream" / f"{wav.stem}.json").read_text())
    assert batch["text"] == overfit["texts"][0]
    assert stream == batch
