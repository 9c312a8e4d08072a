"""Diagnostic, not training (#18): would a channel-robust normalization help? Decodes manifests greedily with
a trained model three ways: as trained, with each utterance's mean log-mel moved to the training mean (an
oracle per-utterance mean normalization at inference, no retraining), and moved half way. Prints WER/CER.

    python recipes/realspeech/cmn_diagnostic.py MODEL MANIFEST...
"""

from __future__ import annotations

import sys

import torch

from asr.audio import load_audio
from asr.decoding import greedy_decode
from asr.features import LogMel
from asr.model import load_model
from asr.training.data import read_manifest
from asr.training.evaluate import error_rates

SHIFTS = {"as trained": 0.0, "mean moved half way": 0.5, "mean moved to the training mean": 1.0}


def main(model_path: str, manifests: list[str]) -> None:
    torch.set_num_threads(1)
    model, logmel = load_model(model_path).eval(), LogMel()
    for manifest in manifests:
        utts = read_manifest(manifest)
        hyps: dict[str, list[str]] = {name: [] for name in SHIFTS}
        for u in utts:
            with torch.no_grad():
                feats = logmel(torch.from_numpy(load_audio(u.path)))
                offset = feats.mean(0) - model.normalizer.mean
                for name, k in SHIFTS.items():
                    logits, _, _ = model((feats - k * offset)[None])
                    hyps[name].append(greedy_decode(logits[0], model.config.vocab).text)
        for name, h in hyps.items():
            er = error_rates([u.text for u in utts], h)
            print(f"{manifest}: {name}: WER {100 * er.wer:.2f} CER {100 * er.cer:.2f} ({er.utterances} clips)")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
