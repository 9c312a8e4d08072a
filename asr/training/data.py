"""Training data: LibriSpeech-layout corpora and jsonl manifests, datasets, batching, download.

A corpus folder holds `speaker/chapter/speaker-chapter.trans.txt` (lines `ID TEXT`) next to
`ID.flac` (or `ID.wav`). Scanning reads only audio headers; the result is cached as a jsonl
manifest so the next run does not touch the audio at all.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import math
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import soundfile as sf
import torch

from ..audio import AudioError, load_audio
from ..tokenizer import Tokenizer, normalize_text
from ..utils import atomic_write

log = logging.getLogger("asr")

PathLike = Union[str, Path]
CACHE_NAME = ".asr-manifest.jsonl"
MANIFEST_VERSION = 1
AUDIO_EXTENSIONS = (".flac", ".wav")


@dataclass
class Utterance:
    id: str
    path: str
    text: str  # normalized with asr.tokenizer.normalize_text
    duration: float  # seconds
    speaker: str
    source: str = ""  # corpus the clip comes from (manifest field), for per-source results


# ---------------------------------------------------------------- scanning


def _transcript_files(root: Path) -> list[Path]:
    """All *.trans.txt below root (any depth, so a parent of several subsets works too), sorted.

    Hidden folders are skipped: they hold our own temporary extraction directories."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if f.endswith(".trans.txt")]
    return sorted(found)


def _audio_duration(path: Path) -> float:
    info = sf.info(str(path))  # header only, no decoding
    if info.samplerate <= 0 or info.frames <= 0:
        raise ValueError("no audio frames")
    return info.frames / info.samplerate


def _problem(path: PathLike, reason: str) -> str:
    message = f"{path}: {reason}; skipped"
    log.warning(message)
    return message


def _duration_or_error(path: Path) -> Union[float, str]:
    try:
        return _audio_duration(path)
    except Exception as e:  # libsndfile raises several types for corrupt files
        return f"unreadable audio ({str(e).splitlines()[0] if str(e) else e.__class__.__name__})"


def _scan(root: Path) -> tuple[list[Utterance], list[str]]:
    candidates: list[tuple[str, str, Path, str]] = []  # (id, text, audio, speaker)
    problems: list[str] = []
    for trans in _transcript_files(root):
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            problems.append(_problem(trans, f"unreadable transcript ({e.__class__.__name__})"))
            continue
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue  # blank lines (e.g. a trailing newline) are not items
            uid, _, raw = line.strip().partition(" ")
            where = f"{trans}:{lineno}"
            if not raw.strip():
                problems.append(_problem(where, f"empty transcript for {uid}"))
                continue
            text = normalize_text(raw)
            if not text:
                problems.append(_problem(where, f"transcript of {uid} is empty after normalization"))
                continue
            audio = next((p for p in (trans.parent / (uid + e) for e in AUDIO_EXTENSIONS) if p.exists()), None)
            if audio is None:
                problems.append(_problem(trans.parent / f"{uid}.flac", "audio file missing"))
                continue
            speaker = uid.split("-")[0] if "-" in uid else trans.parent.parent.name
            candidates.append((uid, text, audio, speaker))

    # Header reads are I/O bound (281k files for full LibriSpeech) and libsndfile runs without
    # the GIL, so a few threads help on a cold disk; map() keeps the corpus order.
    from rich.progress import Progress

    utterances: list[Utterance] = []
    with ThreadPoolExecutor(max_workers=8) as pool, \
            Progress(transient=True, disable=not sys.stderr.isatty() or len(candidates) < 1000) as progress:
        task = progress.add_task(f"scanning {root}", total=len(candidates))
        for (uid, text, audio, speaker), duration in zip(
                candidates, pool.map(_duration_or_error, [c[2] for c in candidates])):
            progress.advance(task)
            if isinstance(duration, str):
                problems.append(_problem(audio, duration))
            else:
                utterances.append(Utterance(uid, str(audio), text, duration, speaker))
    return utterances, problems


def scan_librispeech(root: PathLike) -> list[Utterance]:
    """Every usable utterance below `root` (LibriSpeech layout). Bad items are logged and skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    return _scan(root)[0]


def _fingerprint(root: Path) -> dict[str, list[int]]:
    """What the cache depends on: transcript files (mtime, size) and their folders' mtimes.

    A folder's mtime changes when audio files are added, removed or renamed in it, so adding a
    missing flac invalidates the cache too. Rewriting an audio file in place does not."""
    fp: dict[str, list[int]] = {}
    for trans in _transcript_files(root):
        st = trans.stat()
        # (root's own mtime changes whenever the cache is written, so it cannot be part of the key)
        folder_mtime = 0 if trans.parent == root else trans.parent.stat().st_mtime_ns
        fp[trans.relative_to(root).as_posix()] = [st.st_mtime_ns, st.st_size, folder_mtime]
    return fp


# ---------------------------------------------------------------- manifests


def write_manifest(utterances: Sequence[Utterance], path: PathLike, header: Optional[dict] = None) -> None:
    """jsonl, one utterance per line, written atomically (temp file + os.replace).

    Paths inside the manifest's folder are stored relative to it, so a copied tree keeps working."""
    path = Path(path)
    base = path.parent.resolve()
    with atomic_write(path) as f:
        if header is not None:
            f.write(json.dumps({"_asr_manifest": MANIFEST_VERSION, **header}) + "\n")
        for u in utterances:
            row = asdict(u)
            p = Path(u.path).resolve()
            if p.is_relative_to(base):
                row["path"] = p.relative_to(base).as_posix()
            f.write(json.dumps(row) + "\n")


def _read_header(path: Path) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            first = json.loads(f.readline() or "null")
    except (OSError, ValueError):
        return None
    return first if isinstance(first, dict) and "_asr_manifest" in first else None


def read_manifest(path: PathLike) -> list[Utterance]:
    """A jsonl manifest: rows need `path` and `text`; `id`, `speaker`, `duration` are optional
    (duration is then read from the audio header). Relative paths are relative to the manifest."""
    path = Path(path)
    out: list[Utterance] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
                if "_asr_manifest" in row:
                    continue
                audio = Path(row["path"])
                text = normalize_text(str(row["text"]))
            except (ValueError, KeyError, TypeError) as e:
                _problem(where, f"bad manifest line ({e.__class__.__name__}: {e})")
                continue
            if not audio.is_absolute():
                audio = path.parent / audio
            if not text:
                _problem(where, "empty transcript")
                continue
            duration = row.get("duration")
            if duration is None:
                try:
                    duration = _audio_duration(audio)
                except Exception as e:
                    _problem(audio, f"unreadable audio ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
                    continue
            out.append(Utterance(str(row.get("id") or audio.stem), str(audio), text, float(duration),
                                 str(row.get("speaker", "")), str(row.get("source", ""))))
    return out


def _load_folder(root: Path, cache: Optional[Path]) -> list[Utterance]:
    cache = Path(cache) if cache is not None else root / CACHE_NAME
    fingerprint = _fingerprint(root)
    header = _read_header(cache) if cache.exists() else None
    if header is not None and header.get("_asr_manifest") == MANIFEST_VERSION \
            and header.get("root") == str(root.resolve()) and header.get("transcripts") == fingerprint:
        utts = read_manifest(cache)
        if header.get("skipped"):
            log.warning(f"{root}: {header['skipped']} problem item(s) skipped (listed when scanned; "
                        f"delete {cache} to rescan)")
        return utts
    utts, problems = _scan(root)
    try:
        write_manifest(utts, cache, {"root": str(root.resolve()), "transcripts": fingerprint,
                                     "skipped": len(problems)})
    except OSError as e:
        # A read-only corpus (e.g. a shared mount) still works, it is just rescanned every time.
        log.warning(f"{cache}: cannot write manifest cache ({e.strerror or e}); continuing without cache")
    return utts


def load_manifest(source: Union[PathLike, Sequence[PathLike]], cache: Optional[PathLike] = None) -> list[Utterance]:
    """Utterances from a jsonl manifest, a corpus folder, or a list of those (concatenated).

    A folder is scanned once and cached in `cache` (default `<folder>/.asr-manifest.jsonl`);
    the cache is reused while the folder's transcript files and their folders are unchanged.
    `cache` applies to a single folder only; list entries each use their default location."""
    if isinstance(source, (list, tuple)):
        if cache is not None and len(source) != 1:
            raise ValueError("cache= needs a single source folder")
        return [u for s in source for u in load_manifest(s, cache)]
    path = Path(source)
    if path.is_dir():
        return _load_folder(path, Path(cache) if cache is not None else None)
    if path.is_file() and path.name.endswith(".jsonl"):
        return read_manifest(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    raise ValueError(f"{path}: not a corpus folder or .jsonl manifest")


def held_out_sentences(sources: Sequence[PathLike], min_words: int = 2) -> set[str]:
    """Normalized sentences of dev/test sets (manifests, corpus folders or text files, one sentence a line)
    that training audio and LM text must not contain. Shorter texts (single words: digits, commands) are
    vocabulary that every split shares, not sentences, so they are left out."""
    held: set[str] = set()
    for source in sources:
        path = Path(source)
        if path.is_file() and not path.name.endswith(".jsonl"):
            texts = [normalize_text(line) for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        else:
            texts = [u.text for u in load_manifest(path)]
        held.update(t for t in texts if len(t.split()) >= min_words)
    return held


# ---------------------------------------------------------------- dataset and batches


class SpeechDataset(torch.utils.data.Dataset):
    """Utterances -> dict(waveform, targets, text, id); None for a file that fails to load."""

    def __init__(self, utterances: Sequence[Utterance], tokenizer: Tokenizer,
                 transform: Optional[Callable[[np.ndarray], np.ndarray]] = None):
        self.utterances = list(utterances)
        self.tokenizer = tokenizer
        self.transform = transform

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> Optional[dict[str, Any]]:
        u = self.utterances[i]
        try:
            wav = load_audio(u.path)
        except (AudioError, OSError) as e:
            # One corrupt file in a long run must not kill training; collate drops the None.
            log.warning(f"{e}; skipped" if isinstance(e, AudioError) else f"{u.path}: {e}; skipped")
            return None
        if self.transform is not None:
            wav = self.transform(wav)
        return {"waveform": torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)),
                "targets": torch.tensor(self.tokenizer.encode(u.text), dtype=torch.long),
                "text": u.text, "id": u.id}


def collate(items: Sequence[Optional[dict[str, Any]]]) -> Optional[dict[str, Any]]:
    """Zero-padded batch; items that failed to load (None) are dropped, None if nothing is left."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    pad = torch.nn.utils.rnn.pad_sequence
    return {
        "waveforms": pad([it["waveform"] for it in items], batch_first=True),
        "waveform_lengths": torch.tensor([len(it["waveform"]) for it in items], dtype=torch.long),
        "targets": pad([it["targets"] for it in items], batch_first=True, padding_value=0),
        "target_lengths": torch.tensor([len(it["targets"]) for it in items], dtype=torch.long),
        "texts": [it["text"] for it in items],
        "ids": [it["id"] for it in items],
    }


class BucketingBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar-duration utterances whose padded length (longest × count) ≤ max_seconds.

    Utterances are grouped into fixed duration buckets `bucket_width` seconds wide; a bucket
    whose longest utterance lasts m seconds is cut into batches of floor(max_seconds / m). So
    the number of batches per epoch does not depend on the epoch (the LR schedule can count on
    it); shuffling changes which utterances share a batch and the batch order. An utterance
    longer than max_seconds forms a batch of one (it exceeds the cap; a warning says how many).

    Deterministic given (seed, epoch). With num_replicas > 1 each rank takes every
    num_replicas-th batch; the batch list is padded by repeating batches from its start so all
    ranks get the same number (DDP needs equal step counts), hence a few utterances are seen
    twice per epoch. Resume: `load_state_dict({"epoch", "position"})` skips the first
    `position` batches of that epoch; the position is advanced as batches are yielded and reset
    to 0 at the end of an epoch. With DataLoader workers the loader prefetches, so the trainer
    should count consumed batches itself and pass them in.
    """

    def __init__(self, durations: Sequence[float], max_seconds: float, shuffle: bool = True, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, bucket_width: float = 1.0):
        if max_seconds <= 0 or bucket_width <= 0:
            raise ValueError("max_seconds and bucket_width must be positive")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.max_seconds = float(max_seconds)
        self.shuffle, self.seed = shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.position = 0, 0
        keys = np.floor(self.durations / bucket_width).astype(np.int64)
        # Sorted by duration inside each bucket: the unshuffled order (evaluation) is by length.
        order = np.lexsort((np.arange(len(keys)), self.durations, keys))
        self._buckets: list[tuple[np.ndarray, int]] = []
        for key in np.unique(keys):
            members = order[keys[order] == key]
            longest = float(self.durations[members].max())
            size = max(1, int(self.max_seconds // longest)) if longest > 0 else len(members)
            while size > 1 and size * longest > self.max_seconds:  # guard against float rounding
                size -= 1
            self._buckets.append((members, size))
        too_long = int((self.durations > self.max_seconds).sum())
        if too_long:
            log.warning(f"{too_long} utterance(s) longer than the {self.max_seconds:g} s batch cap "
                        f"form batches of one")
        self._total = sum(math.ceil(len(m) / s) for m, s in self._buckets)
        self._per_rank = math.ceil(self._total / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def all_batches(self) -> list[list[int]]:
        """Every batch of the current epoch, all ranks, before padding and sharding."""
        rng = np.random.default_rng([self.seed, self.epoch])
        batches: list[list[int]] = []
        for members, size in self._buckets:
            if self.shuffle:
                members = rng.permutation(members)
            batches += [members[i: i + size].tolist() for i in range(0, len(members), size)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def rank_batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch (the full epoch, ignoring position)."""
        batches = self.all_batches()
        if not batches:
            return []
        need = self._per_rank * self.num_replicas
        padded = (batches * math.ceil(need / len(batches)))[:need]
        return padded[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.rank_batches()
        for k in range(self.position, len(batches)):
            self.position = k + 1
            yield batches[k]
        self.position = 0

    def __len__(self) -> int:
        return self._per_rank


# ---------------------------------------------------------------- download

LIBRISPEECH_URL = "https://www.openslr.org/resources/12"
# sha256 of the official archives (the table torchaudio.datasets.librispeech verifies against).
LIBRISPEECH_SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
MARKER = ".asr-prepared"
_CHUNK = 1 << 20


def _hash_file(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, part: Path, timeout: float) -> bool:
    """Downloads url into `part`, resuming from its current size. Returns True if it resumed."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "asr-prepare"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the .part is already complete
            return True
        raise RuntimeError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise RuntimeError(f"{url}: {getattr(e, 'reason', e)}") from None
    with response:
        resumed = have > 0 and response.status == 206 and \
            response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
        if response.status == 206 and not resumed:
            part.unlink(missing_ok=True)  # a range we did not ask for: start over on the next run
            raise RuntimeError(f"{url}: server sent an unexpected byte range; rerun to download from the start")
        if not resumed:
            have = 0  # the server ignored the Range header and sends everything
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)
        progress = Progress(TextColumn(part.name.removesuffix(".part")), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(), disable=not sys.stderr.isatty())
        with progress, open(part, "ab" if resumed else "wb") as f:
            task = progress.add_task("download", total=total, completed=have)
            try:
                got = have
                while block := response.read(_CHUNK):
                    f.write(block)
                    got += len(block)
                    progress.advance(task, len(block))
            except (OSError, http.client.HTTPException) as e:  # dropped connection: keep .part to resume
                raise RuntimeError(f"{url}: download interrupted ({e}); rerun to resume") from None
            # http.client's read(n) returns b"" on a connection closed early instead of raising.
            if total is not None and got < total:
                raise RuntimeError(f"{url}: download interrupted ({got} of {total} bytes); rerun to resume")
    return resumed


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")  # refuses absolute paths, '..', links out of dest, devices
        return
    for member in tar.getmembers():  # Python without extraction filters: same checks by hand
        name = Path(member.name)
        if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
            raise RuntimeError(f"unsafe member in archive: {member.name}")
    tar.extractall(dest)


def download_librispeech(subset: str, dest: PathLike, base_url: str = LIBRISPEECH_URL,
                         checksum: Optional[str] = None, timeout: float = 60.0) -> Path:
    """Downloads and extracts `{base_url}/{subset}.tar.gz` to `dest/LibriSpeech/{subset}`.

    Resumable (`dest/{subset}.tar.gz.part` + HTTP Range), verified against `checksum` (md5 if
    32 hex digits, sha256 if 64; defaults to the official sha256 of known subsets), extracted
    atomically; a rerun after success is a no-op. Returns the subset folder."""
    dest = Path(dest)
    target = dest / "LibriSpeech" / subset
    if (target / MARKER).exists():
        return target
    if checksum is None:
        if subset not in LIBRISPEECH_SHA256:
            raise ValueError(f"unknown LibriSpeech subset {subset!r} (known: {', '.join(LIBRISPEECH_SHA256)})")
        checksum = LIBRISPEECH_SHA256[subset]
    checksum = checksum.lower()
    algorithm = {32: "md5", 64: "sha256"}.get(len(checksum))
    if algorithm is None:
        raise ValueError(f"checksum {checksum!r} is neither md5 nor sha256")
    if target.exists():
        raise RuntimeError(f"{target} exists but was not made by asr prepare; remove it or use it directly")

    dest.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{subset}.tar.gz"
    part = dest / f"{subset}.tar.gz.part"
    resumed = _fetch(url, part, timeout)
    if _hash_file(part, algorithm) != checksum and resumed:
        # The kept part may itself be bad (e.g. a server-side change): one clean retry.
        log.warning(f"{url}: checksum mismatch after resuming; downloading again from the start")
        part.unlink()
        _fetch(url, part, timeout)
    if (actual := _hash_file(part, algorithm)) != checksum:
        part.unlink()
        raise RuntimeError(f"{url}: checksum mismatch ({algorithm} {actual}, expected {checksum})")

    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".extract-{subset}-"))
    try:
        try:
            with tarfile.open(part, "r:*") as tar:
                _safe_extract(tar, tmp)
        except (tarfile.TarError, OSError) as e:
            raise RuntimeError(f"{part}: cannot extract ({e})") from None
        extracted = tmp / "LibriSpeech" / subset
        if not extracted.is_dir():
            raise RuntimeError(f"{url}: archive has no LibriSpeech/{subset} folder")
        (extracted / MARKER).write_text(f"{algorithm} {checksum}\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(extracted, target)  # atomic: the folder appears complete or not at all
        for extra in (tmp / "LibriSpeech").iterdir():  # README, SPEAKERS.TXT, ... (shared by subsets)
            if not (target.parent / extra.name).exists():
                os.replace(extra, target.parent / extra.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    part.unlink()
    return target
