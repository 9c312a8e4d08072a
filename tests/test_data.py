"""asr.training.data: corpus scanning and manifest cache, dataset/collate, bucketing sampler, download."""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.training import data
from asr.training.data import (BucketingBatchSampler, SpeechDataset, collate, download_librispeech,
                      load_manifest, read_manifest, scan_librispeech, write_manifest)
from asr.tokenizer import Tokenizer, normalize_text

from conftest import SENTENCES


@pytest.fixture
def corpus(tiny_corpus, tmp_path) -> Path:
    """A private, mutable copy of the session corpus."""
    return Path(shutil.copytree(tiny_corpus, tmp_path / "train-tiny"))


def count_info_calls(monkeypatch) -> list:
    calls: list = []
    real = sf.info

    def info(path, *a, **k):
        calls.append(path)
        return real(path, *a, **k)

    monkeypatch.setattr(sf, "info", info)
    return calls


# ---------------------------------------------------------------- scanning and manifests


def test_scan_reads_layout(corpus):
    utts = scan_librispeech(corpus)
    assert sorted(u.text for u in utts) == sorted(SENTENCES)
    assert {u.speaker for u in utts} == {"11", "12"}
    for u in utts:
        assert Path(u.path).name == f"{u.id}.flac" and Path(u.path).exists()
        assert u.duration == pytest.approx(sf.info(u.path).duration)
        assert 0.5 < u.duration < 5


def test_manifest_cached_and_reused(corpus, monkeypatch):
    calls = count_info_calls(monkeypatch)
    first = load_manifest(corpus)
    assert len(first) == 6 and len(calls) == 6
    assert (corpus / data.CACHE_NAME).exists()
    calls.clear()
    second = load_manifest(str(corpus))
    assert second == first and calls == []  # no audio header was read again


def test_cache_invalidated_when_transcript_changes(corpus, monkeypatch):
    load_manifest(corpus)
    trans = corpus / "11" / "100" / "11-100.trans.txt"
    lines = trans.read_text().splitlines()
    trans.write_text("\n".join(lines[:2] + ["11-100-0002 A DIFFERENT TEXT"]) + "\n")
    calls = count_info_calls(monkeypatch)
    utts = load_manifest(corpus)
    assert calls, "a changed transcript must trigger a rescan"
    assert "a different text" in {u.text for u in utts} and len(utts) == 6


def test_cache_invalidated_when_audio_added(corpus):
    flac = corpus / "12" / "200" / "12-200-0000.flac"
    moved = corpus / "elsewhere.flac"
    flac.rename(moved)
    assert len(load_manifest(corpus)) == 5
    moved.rename(flac)  # the missing file comes back: its folder's mtime changes
    assert len(load_manifest(corpus)) == 6


def test_bad_items_skipped_with_one_warning_each(corpus, caplog):
    d = corpus / "11" / "100"
    shutil.copy(d / "11-100-0000.flac", d / "11-100-0098.flac")
    shutil.copy(d / "11-100-0000.flac", d / "11-100-0096.flac")
    (d / "11-100-0097.flac").write_bytes(np.random.default_rng(0).bytes(5000))  # corrupt
    trans = d / "11-100.trans.txt"
    trans.write_text(trans.read_text() + "11-100-0099 NO AUDIO FOR THIS ONE\n"  # missing flac
                     "11-100-0098\n"  # empty transcript
                     "11-100-0097 CORRUPT AUDIO\n"
                     "11-100-0096 ... !!!\n"  # empty once normalized
                     "\n")
    with caplog.at_level(logging.WARNING, logger="asr"):
        utts = load_manifest(corpus)
    assert sorted(u.text for u in utts) == sorted(SENTENCES)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4 and all("\n" not in m for m in messages)
    for needle in ("11-100-0099.flac", "11-100.trans.txt:5", "11-100-0097.flac", "11-100.trans.txt:7"):
        assert sum(needle in m for m in messages) == 1, (needle, messages)
    # From the cache, a single summary line says that items were skipped.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="asr"):
        assert load_manifest(corpus) == utts
    assert len(caplog.records) == 1 and "4 problem item(s)" in caplog.records[0].getMessage()


def test_unwritable_cache_falls_back(corpus, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="asr"):
        utts = load_manifest(corpus, cache=blocker / "m.jsonl")
    assert len(utts) == 6
    assert any("cannot write manifest cache" in r.getMessage() for r in caplog.records)


def test_jsonl_manifest_roundtrip(corpus, tmp_path):
    utts = scan_librispeech(corpus)
    inside = corpus / "list.jsonl"
    write_manifest(utts, inside)
    assert '"path": "11/100/' in inside.read_text()  # relative: the tree can be moved
    assert load_manifest(inside) == utts
    outside = tmp_path / "m" / "list.jsonl"
    outside.parent.mkdir()
    write_manifest(utts, outside)
    assert load_manifest([outside, str(inside)]) == utts + utts
    # Hand-written manifests may omit id/speaker/duration and use raw text.
    hand = tmp_path / "hand.jsonl"
    hand.write_text(f'{{"path": "{utts[0].path}", "text": "Hello, World!"}}\nnot json\n')
    (u,) = read_manifest(hand)
    assert u.text == "hello world" and u.id == Path(utts[0].path).stem
    assert u.duration == pytest.approx(utts[0].duration)


def test_bad_sources_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_manifest(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="x.txt"):
        load_manifest(tmp_path / "x.txt")


# ---------------------------------------------------------------- dataset and collate


def test_dataset_and_collate(corpus, caplog):
    utts = load_manifest(corpus)
    tok = Tokenizer()
    ds = SpeechDataset(utts, tok, transform=lambda w: w * 0.5)
    item = ds[0]
    assert item["waveform"].dtype == torch.float32 and item["waveform"].ndim == 1
    assert item["waveform"].numel() == pytest.approx(utts[0].duration * 16000, abs=2)
    assert tok.decode(item["targets"].tolist()) == utts[0].text and item["targets"].dtype == torch.long

    batch = collate([ds[i] for i in range(3)])
    n = max(len(ds[i]["waveform"]) for i in range(3))
    assert batch["waveforms"].shape == (3, n) and batch["waveforms"].dtype == torch.float32
    assert batch["targets"].shape == (3, max(len(normalize_text(u.text)) for u in utts[:3]))
    for i in range(3):
        wl, tl = int(batch["waveform_lengths"][i]), int(batch["target_lengths"][i])
        assert torch.equal(batch["waveforms"][i, :wl], ds[i]["waveform"])
        assert not batch["waveforms"][i, wl:].any() and not batch["targets"][i, tl:].any()
        assert tok.decode(batch["targets"][i, :tl].tolist()) == batch["texts"][i] == utts[i].text
    assert batch["ids"] == [u.id for u in utts[:3]]

    # A file corrupted after the manifest was built: one warning, item dropped from its batch.
    Path(utts[1].path).write_bytes(b"garbage" * 100)
    with caplog.at_level(logging.WARNING, logger="asr"):
        assert ds[1] is None
    assert [utts[1].path in r.getMessage() for r in caplog.records] == [True]
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["ids"] == [utts[0].id, utts[2].id] and batch["waveforms"].shape[0] == 2
    assert collate([None, None]) is None

    loader = torch.utils.data.DataLoader(ds, batch_sampler=BucketingBatchSampler(
        [u.duration for u in utts], 1000.0, shuffle=False), collate_fn=collate)
    assert sorted(i for b in loader for i in b["ids"]) == sorted(u.id for u in utts if u is not utts[1])


# ---------------------------------------------------------------- bucketing sampler


def random_durations(seed: int, n: int = 500) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(rng.uniform(0.3, 20.0, n)) + [0.05, 25.0, 40.0]  # some longer than a small cap


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("cap", [21.0, 60.0, 300.0])
def test_bucketing_cap_and_coverage(seed, cap):
    durs = random_durations(seed)
    sampler = BucketingBatchSampler(durs, cap, shuffle=True, seed=seed)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(durs)))  # each exactly once
        for b in batches:
            padded = max(durs[i] for i in b) * len(b)
            assert padded <= cap or len(b) == 1
            assert max(durs[i] for i in b) - min(durs[i] for i in b) < 1.0  # similar durations


def test_bucketing_fills_batches():
    durs = [2.0 + 0.001 * i for i in range(100)]
    batches = list(BucketingBatchSampler(durs, 50.0, shuffle=False))
    assert [len(b) for b in batches] == [23, 23, 23, 23, 8]  # floor(50 / 2.099)
    assert [i for b in batches for i in b] == list(range(100))  # unshuffled: sorted by duration


def test_bucketing_deterministic_per_seed_and_epoch():
    durs = random_durations(7)

    def epoch_batches(seed: int, epoch: int) -> list:
        s = BucketingBatchSampler(durs, 60.0, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert epoch_batches(1, 3) == epoch_batches(1, 3)
    assert epoch_batches(1, 3) != epoch_batches(1, 4)
    assert epoch_batches(1, 3) != epoch_batches(2, 3)
    assert len(epoch_batches(1, 3)) == len(epoch_batches(2, 4))  # batch count does not vary
    unshuffled = BucketingBatchSampler(durs, 60.0, shuffle=False)
    unshuffled.set_epoch(5)
    assert list(unshuffled) == list(BucketingBatchSampler(durs, 60.0, shuffle=False))


@pytest.mark.parametrize("replicas", [2, 3, 7])
def test_bucketing_ddp_shards(replicas):
    durs = random_durations(3, n=200)
    for epoch in range(2):
        shards = []
        for rank in range(replicas):
            s = BucketingBatchSampler(durs, 40.0, seed=9, num_replicas=replicas, rank=rank)
            s.set_epoch(epoch)
            shards.append(list(s))
            assert len(shards[-1]) == len(s)
        assert len({len(sh) for sh in shards}) == 1  # equal step counts on every rank
        single = BucketingBatchSampler(durs, 40.0, seed=9)
        single.set_epoch(epoch)
        everything = [tuple(b) for b in single.all_batches()]
        got = [tuple(b) for sh in shards for b in sh]
        assert set(got) == set(everything)  # nothing missing
        # Batches are disjoint except the padding, which repeats at most replicas-1 batches.
        assert len(got) - len(everything) == len(got) - len(set(got)) < replicas
        per_utt = np.bincount([i for b in got for i in b], minlength=len(durs))
        assert per_utt.min() >= 1


def test_bucketing_resume_continues_with_remaining_batches():
    durs = random_durations(11, n=300)
    for replicas, rank in [(1, 0), (2, 1)]:
        full = BucketingBatchSampler(durs, 50.0, seed=4, num_replicas=replicas, rank=rank)
        full.set_epoch(2)
        expected = list(full)
        assert full.state_dict() == {"epoch": 2, "position": 0}  # a finished epoch starts over

        s = BucketingBatchSampler(durs, 50.0, seed=4, num_replicas=replicas, rank=rank)
        s.set_epoch(2)
        it = iter(s)
        first = [next(it) for _ in range(5)]
        state = s.state_dict()
        assert state == {"epoch": 2, "position": 5} and first == expected[:5]

        resumed = BucketingBatchSampler(durs, 50.0, seed=4, num_replicas=replicas, rank=rank)
        resumed.set_epoch(2)  # the trainer's order: set_epoch, then load_state_dict
        resumed.load_state_dict(state)
        rest = list(resumed)
        assert first + rest == expected
        assert list(resumed) == expected  # the next pass is a whole epoch again


def test_bucketing_edge_cases(caplog):
    assert list(BucketingBatchSampler([], 10.0)) == [] and len(BucketingBatchSampler([], 10.0)) == 0
    with caplog.at_level(logging.WARNING, logger="asr"):
        s = BucketingBatchSampler([1.0, 30.0, 31.0], 10.0, shuffle=False)
    assert "2 utterance(s) longer" in caplog.text
    assert list(s) == [[0], [1], [2]]
    few = [list(BucketingBatchSampler([1.0], 10.0, num_replicas=3, rank=r)) for r in range(3)]
    assert few == [[[0]], [[0]], [[0]]]  # fewer batches than ranks: repeated so every rank steps
    with pytest.raises(ValueError):
        BucketingBatchSampler([1.0], 10.0, num_replicas=2, rank=2)


# ---------------------------------------------------------------- download


class ArchiveServer(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    ranges: list[str | None]
    honor_range: bool
    cut_after: int | None  # bytes of body to send before dropping the connection


class Handler(http.server.BaseHTTPRequestHandler):
    server: ArchiveServer

    def do_GET(self):  # noqa: N802
        body = self.server.files.get(self.path)
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and self.server.honor_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.server.cut_after is not None:
            self.wfile.write(body[start: start + self.server.cut_after])
            self.server.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ArchiveServer(("127.0.0.1", 0), Handler)
    srv.files, srv.ranges, srv.honor_range, srv.cut_after = {}, [], True, None
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/resources/12"
    yield srv
    srv.shutdown()
    srv.server_close()


def make_archive(tiny_corpus: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tiny_corpus, arcname="LibriSpeech/dev-tiny", filter=lambda ti: None
                if Path(ti.name).name.startswith(".") else ti)
        readme = b"LibriSpeech ASR corpus (test copy)\n"
        info = tarfile.TarInfo("LibriSpeech/README.TXT")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
        for name, content in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@pytest.fixture(scope="module")
def archive(tiny_corpus) -> bytes:
    return make_archive(tiny_corpus)


def no_leftovers(dest: Path) -> bool:
    return not list(dest.glob(".extract-*")) and not list(dest.glob("*.part"))


def test_download_extract_and_noop_rerun(server, archive, tmp_path):
    server.files["/resources/12/dev-tiny.tar.gz"] = archive
    dest = tmp_path / "data"
    folder = download_librispeech("dev-tiny", dest, server.url, hashlib.sha256(archive).hexdigest())
    assert folder == dest / "LibriSpeech" / "dev-tiny"
    assert sorted(u.text for u in load_manifest(folder)) == sorted(SENTENCES)
    assert (dest / "LibriSpeech" / "README.TXT").exists() and no_leftovers(dest)
    assert server.ranges == [None]
    # Second run: already there, no network at all (md5 accepted too).
    assert download_librispeech("dev-tiny", dest, server.url, hashlib.md5(archive).hexdigest()) == folder
    assert len(server.ranges) == 1


def test_download_resumes_partial_file(server, archive, tmp_path):
    server.files["/resources/12/dev-tiny.tar.gz"] = archive
    dest = tmp_path / "data"
    dest.mkdir()
    half = len(archive) // 2
    (dest / "dev-tiny.tar.gz.part").write_bytes(archive[:half])
    folder = download_librispeech("dev-tiny", dest, server.url, hashlib.sha256(archive).hexdigest())
    assert server.ranges == [f"bytes={half}-"]
    assert len(load_manifest(folder)) == 6 and no_leftovers(dest)


def test_download_interrupted_then_resumed(server, archive, tmp_path):
    server.files["/resources/12/dev-tiny.tar.gz"] = archive
    server.cut_after = 3000
    dest = tmp_path / "data"
    sha = hashlib.sha256(archive).hexdigest()
    with pytest.raises(RuntimeError, match="interrupted.*rerun to resume"):
        download_librispeech("dev-tiny", dest, server.url, sha)
    assert (dest / "dev-tiny.tar.gz.part").read_bytes() == archive[:3000]
    assert not (dest / "LibriSpeech").exists()
    folder = download_librispeech("dev-tiny", dest, server.url, sha)
    assert server.ranges == [None, "bytes=3000-"] and len(load_manifest(folder)) == 6


def test_download_restarts_when_server_ignores_range(server, archive, tmp_path):
    server.files["/resources/12/dev-tiny.tar.gz"] = archive
    server.honor_range = False
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "dev-tiny.tar.gz.part").write_bytes(b"stale bytes that must not be kept")
    folder = download_librispeech("dev-tiny", dest, server.url, hashlib.sha256(archive).hexdigest())
    assert len(load_manifest(folder)) == 6


def test_download_bad_resume_retries_once_from_scratch(server, archive, tmp_path):
    server.files["/resources/12/dev-tiny.tar.gz"] = archive
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "dev-tiny.tar.gz.part").write_bytes(b"\0" * 100)  # wrong bytes in the kept part
    folder = download_librispeech("dev-tiny", dest, server.url, hashlib.sha256(archive).hexdigest())
    assert server.ranges == ["bytes=100-", None] and len(load_manifest(folder)) == 6


def test_download_checksum_mismatch(server, archive, tmp_path):
    server.files["/resources/12/dev-tiny.tar.gz"] = archive
    dest = tmp_path / "data"
    with pytest.raises(RuntimeError, match=r"dev-tiny.tar.gz: checksum mismatch") as e:
        download_librispeech("dev-tiny", dest, server.url, "0" * 64)
    assert "\n" not in str(e.value)
    assert not (dest / "LibriSpeech").exists() and no_leftovers(dest)


def test_download_errors_are_one_line(server, tmp_path, tiny_corpus):
    with pytest.raises(RuntimeError, match="HTTP 404"):
        download_librispeech("dev-missing", tmp_path, server.url, "0" * 32)
    with pytest.raises(ValueError, match="unknown LibriSpeech subset"):
        download_librispeech("dev-typo", tmp_path, server.url)
    with pytest.raises(RuntimeError, match="127.0.0.1:1"):
        download_librispeech("dev-tiny", tmp_path, "http://127.0.0.1:1/x", "0" * 32)
    # An archive trying to write outside the destination is refused, nothing is extracted.
    evil = make_archive(tiny_corpus, {"../evil.txt": b"x"})
    server.files["/resources/12/dev-evil.tar.gz"] = evil
    with pytest.raises(RuntimeError, match="cannot extract"):
        download_librispeech("dev-evil", tmp_path / "d", server.url, hashlib.sha256(evil).hexdigest())
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "d" / "LibriSpeech").exists()
    assert not list((tmp_path / "d").glob(".extract-*"))


def test_known_subsets_have_checksums():
    assert set(data.LIBRISPEECH_SHA256) == {"train-clean-100", "train-clean-360", "train-other-500", "dev-clean",
                                            "dev-other", "test-clean", "test-other"}
    assert all(len(v) == 64 for v in data.LIBRISPEECH_SHA256.values())
