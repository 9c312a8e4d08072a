"""Shared fixtures: small speech corpora synthesized with espeak-ng in LibriSpeech layout."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import load_audio
from asr.tokenizer import DEFAULT_VOCAB

SENTENCES = [
    "the cat sat on the mat",
    "open the door please",
    "she sells sea shells by the shore",
    "we walked home in the rain",
    "a bright red apple fell from the tree",
    "turn left at the next light",
]


def one_hot_logits(ids: list[int], v: int = len(DEFAULT_VOCAB)) -> torch.Tensor:
    """(T, V) logits whose argmax at step t is ids[t], with near-certain posteriors."""
    x = torch.full((len(ids), v), -10.0)
    x[torch.arange(len(ids)), torch.tensor(ids)] = 10.0
    return x


def espeak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """Synthesize `text` with espeak-ng and return 16 kHz mono float32 samples."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (bash .ci/install installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
        return load_audio(wav)


def write_librispeech_tree(root: Path, utterances: dict[tuple[int, int], list[str]], voice: str = "en-us") -> Path:
    """utterances: {(speaker, chapter): [text, ...]} -> root/speaker/chapter/*.flac + *.trans.txt."""
    for (spk, chap), texts in utterances.items():
        d = root / str(spk) / str(chap)
        d.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, text in enumerate(texts):
            uid = f"{spk}-{chap}-{i:04d}"
            sf.write(d / f"{uid}.flac", espeak(text, voice), 16000)
            lines.append(f"{uid} {text.upper()}")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Two speakers, six utterances, LibriSpeech layout."""
    root = tmp_path_factory.mktemp("librispeech") / "train-tiny"
    return write_librispeech_tree(root, {(11, 100): SENTENCES[:3], (12, 200): SENTENCES[3:]})


OVERFIT_TEXTS = ["open the door please", "turn left at the next light"]


def pad_batch(waves: list[np.ndarray], texts: list[str], tokenizer) -> dict:
    """A collated batch built by hand, so model tests need nothing from the data pipeline."""
    import torch

    n = max(len(w) for w in waves)
    ids = [torch.tensor(tokenizer.encode(t)) for t in texts]
    return {
        "waveforms": torch.stack([torch.nn.functional.pad(torch.from_numpy(w), (0, n - len(w))) for w in waves]),
        "waveform_lengths": torch.tensor([len(w) for w in waves]),
        "targets": torch.nn.utils.rnn.pad_sequence(ids, batch_first=True),
        "target_lengths": torch.tensor([len(i) for i in ids]),
    }


@pytest.fixture(scope="session")
def overfit(tmp_path_factory) -> dict:
    """A tiny model trained for a few seconds until it transcribes two synthesized utterances exactly."""
    import torch

    from asr.features import LogMel, RunningStats
    from asr.model import AcousticModel, ModelConfig
    from asr.training.train import ctc_loss
    from asr.transcribe import transcribe

    torch.manual_seed(0)
    waves = [espeak(t) for t in OVERFIT_TEXTS]
    model = AcousticModel(ModelConfig(hidden=96, layers=2, dropout=0.0))
    logmel, stats = LogMel(), RunningStats()
    for w in waves:
        stats.add(logmel(torch.from_numpy(w)))
    model.normalizer.set_stats(*stats.result())
    batch = pad_batch(waves, OVERFIT_TEXTS, model.tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses, hyps = [], []
    for step in range(600):
        model.train()
        loss = ctc_loss(model, logmel, batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 20 == 19:
            model.eval()
            hyps = [transcribe(model, w).text for w in waves]
            if hyps == OVERFIT_TEXTS:
                break
    model.eval()
    folder = tmp_path_factory.mktemp("overfit")
    path = folder / "model.pt"
    model.save(path)
    wavs = []
    for i, w in enumerate(waves):
        sf.write(folder / f"utt{i}.wav", w, 16000)
        wavs.append(folder / f"utt{i}.wav")
    return {"model": model, "path": path, "losses": losses, "hyps": hyps, "waves": waves, "wav_paths": wavs,
            "texts": OVERFIT_TEXTS}
