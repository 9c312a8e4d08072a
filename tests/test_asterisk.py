"""The Asterisk-prompt test set: prompt text normalization and preparation (asr.training.asterisk)."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from asr.training.data import read_manifest
from asr.tokenizer import normalize_text
from asr.training import asterisk
from asr.training.asterisk import SPOKEN, main, prepare, prepare_asterisk, prompt_texts

TEXT = """\
; Core Asterisk Sounds in English

beep: [this is a simple beep tone]
silence/1: (1 second of silence)
confbridge-join: <beep ascending>
letters/at: at [@]
letters/exclaimation-point: exclaimation-point [!]
vm-intro: Please leave your message after the tone.  When done hang up or press the pound key. (simple tone sound plays)
dictate/both_help: press * to toggle pause, press # to enter a new dictation filename
keys: Press * for help or #  to exit.
vm-Cust1: folder 5
digits/a-m: A.M.
confbridge-binaural-on: 3D audio enabled
modem: have at least a 28.8 kilobit modem
extension: dial extension 1234 now
demo-thanks: Goodbye.  Thank you for trying out the Asterisk Open Source PBX.
url: For more information, visit www.asterisk.org.
spy-h323: H.323
spy-iax2: IAX (note: does not say "2")
demo-instruct: Press 500 to hear a text that changed since the table was made.
"""

EXPECTED = {
    "letters/at": "at",
    "letters/exclaimation-point": "exclamation point",
    "vm-intro": "please leave your message after the tone when done hang up or press the pound key",
    "dictate/both_help": "press star to toggle pause press pound to enter a new dictation filename",
    "keys": "press star for help or pound to exit",
    "vm-Cust1": "folder five",
    "digits/a-m": "a m",
    "confbridge-binaural-on": "three d audio enabled",
    "modem": "have at least a twenty eight point eight kilobit modem",
    "extension": "dial extension one thousand two hundred thirty four now",  # rule: cardinal
    "demo-thanks": "goodbye thank you for trying out the asterisk open source p b x",
    "url": "for more information visit w w w dot asterisk dot org",
    "spy-h323": "h three two three",  # SPOKEN: digit by digit
    "spy-iax2": "iax",
    "demo-instruct": "press five hundred to hear a text that changed since the table was made",  # table not applied
}


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "core-sounds-en.txt.gz"
    path.write_bytes(gzip.compress(TEXT.encode()))
    return path


def test_prompt_texts(text_file: Path, tmp_path: Path, caplog):
    pytest.importorskip("num2words", reason="pip install num2words")
    texts = prompt_texts(text_file)
    assert texts == EXPECTED  # tones, silence and beeps left out; everything else as spoken
    # An uncompressed text file reads the same.
    plain = tmp_path / "core-sounds-en.txt"
    plain.write_text(TEXT)
    assert prompt_texts(plain) == EXPECTED
    # Undecided several-digit numbers and a changed decided prompt are flagged.
    assert "extension: a number of several digits" in caplog.text
    assert "demo-instruct: text changed since its reading was decided" in caplog.text


def test_spoken_table():
    """Decided readings are in the model's alphabet, without digits, and differ from the written text."""
    assert "spy-h323" in SPOKEN and "demo-instruct" in SPOKEN
    for name, (written, spoken) in SPOKEN.items():
        assert spoken == normalize_text(spoken) and spoken, name
        assert not re.search(r"\d", spoken), name
    instruct = SPOKEN["demo-instruct"][1]
    assert "dial five zero zero" in instruct and "extension one two three four" in instruct
    assert "password four two four two" in instruct and "extension eight five zero zero" in instruct
    assert "finally" not in instruct and "finally" in SPOKEN["demo-instruct"][0].lower()


def test_real_text_file():
    """On Debian's text file (when installed): every prompt in words, the decided readings used."""
    if not asterisk.DEFAULT_TEXT_FILE.is_file():
        pytest.skip(f"Debian package {asterisk.TEXT_PACKAGE} is not installed")
    pytest.importorskip("num2words", reason="pip install num2words")
    written = asterisk.parse_text_file(asterisk.DEFAULT_TEXT_FILE)
    texts = prompt_texts(asterisk.DEFAULT_TEXT_FILE)
    assert len(written) == 569 and len(texts) == 552  # 17 tone/beep/silence prompts left out
    assert sorted(set(written) - set(texts))[:3] == ["ascending-2tone", "beep", "beeperr"]
    assert all(re.fullmatch(r"[a-z' ]+", t) for t in texts.values())
    for name, (w, spoken) in SPOKEN.items():
        assert texts[name] == spoken, name  # every decided text still matches the file


def _g722(path: Path, seconds: float, freq: int = 440) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                    f"sine=frequency={freq}:duration={seconds}", "-ar", "16000", "-ac", "1", "-f", "g722",
                    str(path)], check=True)


@pytest.fixture
def sounds(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    root = tmp_path / "sounds"
    _g722(root / "hello.g722", 0.5)
    _g722(root / "digits" / "5.g722", 0.3)
    _g722(root / "beep.g722", 0.2, 1000)
    _g722(root / "notext.g722", 0.2)
    (root / "broken.g722").write_bytes(b"")  # no audio at all
    text = tmp_path / "sounds.txt"
    text.write_text("hello: Hello, world!\ndigits/5: five\nbeep: [this is a simple beep tone]\n"
                    "broken: Broken.\nmissing: No audio here.\n")
    return root, text


def test_prepare(sounds: tuple[Path, Path], tmp_path: Path):
    root, text = sounds
    dest = tmp_path / "out"
    report = prepare(dest, root, text)
    assert report.manifest == dest / "asterisk.jsonl"
    assert (report.prompts, report.decoded) == (2, 2)
    assert report.non_speech == ["beep"] and report.no_audio == ["missing"] and report.no_text == ["notext"]
    assert len(report.failed) == 1 and "broken.g722" in report.failed[0]
    assert report.skipped == 4

    rows = [json.loads(line) for line in report.manifest.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["digits-5", "hello"]
    assert rows[0] == {"id": "digits-5", "path": "audio/digits/5.flac", "text": "five",
                       "duration": pytest.approx(0.3, abs=0.01), "speaker": "asterisk-allison",
                       "source": "asterisk"}
    utts = read_manifest(report.manifest)
    assert [(u.text, u.speaker) for u in utts] == [("five", "asterisk-allison"), ("hello world", "asterisk-allison")]
    info = sf.info(str(dest / "audio" / "hello.flac"))
    assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    assert abs(info.frames / 16000 - 0.5) < 0.01 and abs(report.seconds - 0.8) < 0.02
    assert not list(dest.rglob("*.tmp"))  # atomic writes leave nothing behind

    # Resumable: decoded files are kept, a missing one is decoded again, the manifest is the same.
    flac = dest / "audio" / "hello.flac"
    mtime = flac.stat().st_mtime_ns
    (dest / "audio" / "digits" / "5.flac").unlink()
    again = prepare(dest, root, text)
    assert (again.prompts, again.decoded) == (2, 1)
    assert flac.stat().st_mtime_ns == mtime
    assert [json.loads(line) for line in report.manifest.read_text().splitlines()] == rows
    assert prepare_asterisk(dest, root, text) == dest / "asterisk.jsonl"


def test_main(sounds: tuple[Path, Path], tmp_path: Path, capsys):
    root, text = sounds
    assert main([str(tmp_path / "out"), "--sounds-dir", str(root), "--text-file", str(text)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 prompts, 0.0 min")
    assert "1 not speech (text only describes a sound): beep" in out
    assert "1 text without audio: missing" in out and "1 audio without text: notext" in out
    assert "1 audio that does not decode" in out and "broken.g722" in out


def test_missing_packages(tmp_path: Path, capsys, monkeypatch):
    text = tmp_path / "t.txt"
    text.write_text("hello: Hello.\n")
    sounds = tmp_path / "sounds"
    with pytest.raises(RuntimeError, match="asterisk-core-sounds-en-g722"):
        prepare(tmp_path / "out", sounds, text)
    sounds.mkdir()
    (sounds / "hello.g722").write_bytes(b"\0" * 800)
    with pytest.raises(RuntimeError, match="install the Debian package asterisk-core-sounds-en\\)"):
        prepare(tmp_path / "out", sounds, tmp_path / "nothing.txt.gz")
    monkeypatch.setattr(asterisk.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="ffmpeg is not installed"):
        prepare(tmp_path / "out", sounds, text)
    # The command line says it in one line.
    assert main([str(tmp_path / "out"), "--sounds-dir", str(sounds), "--text-file", str(text)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: ffmpeg is not installed (install the Debian package ffmpeg)"


def test_asr_prepare_asterisk_command(sounds: tuple[Path, Path], tmp_path: Path, capsys, monkeypatch):
    from asr.apps.cli import main as asr_main
    from asr.training import asterisk

    root, text = sounds
    real = asterisk.prepare
    monkeypatch.setattr(asterisk, "prepare", lambda dest: real(dest, root, text))  # the fake prompts
    assert asr_main(["prepare", "asterisk", "--dest", str(tmp_path / "data")]) == 0
    assert f"asterisk: {tmp_path / 'data' / 'asterisk' / 'asterisk.jsonl'} (2 prompts" in capsys.readouterr().out
    monkeypatch.setattr(asterisk, "prepare", lambda dest: real(dest, tmp_path / "nowhere", text))
    assert asr_main(["prepare", "asterisk", "--dest", str(tmp_path / "data")]) == 1
    assert "asterisk-core-sounds-en-g722" in capsys.readouterr().err
