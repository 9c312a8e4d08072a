"""What every command shares: one-line errors, loading the model and building the decoder it was asked for."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Union

from ..decoding import BeamSearchDecoder
from ..lm import LM_BEAM_SIZE, default_lm
from ..model import AcousticModel, load_model
from ..transcribe import make_decoder


def error(message: str) -> None:
    print(f"asr: error: {message}", file=sys.stderr, flush=True)


def command_model(path: Union[str, Path, None], int8: bool = False) -> AcousticModel:
    """asr.model.load_model (default: the bundled model), a bad or missing file ending the command with
    its one-line message."""
    try:
        return load_model(path, int8)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"asr: error: {e}") from None


def add_decoder_arguments(p: argparse.ArgumentParser, hotwords: bool = True) -> None:
    """How a command decodes: beam search with the bundled LM unless told otherwise."""
    p.add_argument("--lm", metavar="LM",
                   help="word n-gram LM for beam search: a KenLM binary with LM.words.txt beside it, or ARPA; its "
                        "tuned weights and beam come from LM.json (default: the bundled English LM)")
    p.add_argument("--no-lm", action="store_true", help="greedy decoding without an LM (fastest)")
    p.add_argument("--beam-size", type=int, default=0,
                   help=f"beam (default: the LM's tuned beam, else {LM_BEAM_SIZE}; with --no-lm a beam size asks "
                        "for lexicon-free character beam search)")
    if hotwords:
        p.add_argument("--lm-weight", type=float, help="LM weight (default: tuned value next to the LM, else 0.5)")
        p.add_argument("--word-score", type=float, help="word insertion bonus (default: tuned value, else 0)")
        p.add_argument("--silence-score", type=float,
                       help="score added at each word boundary (default: tuned value, else 0)")
        p.add_argument("--hotword", action="append", metavar="WORD[:BOOST]",
                       help="favour this word (repeatable; boost in log-score units, default 5; needs an LM)")


def chosen_lm(args: argparse.Namespace) -> Optional[str]:
    """The LM a command was asked to use: --lm, else the bundled one (if installed), none with --no-lm."""
    if args.no_lm:
        if args.lm:
            raise SystemExit("asr: error: --lm and --no-lm contradict each other")
        return None
    lm = args.lm or default_lm()
    return str(lm) if lm else None


def command_decoder(model: AcousticModel, args: argparse.Namespace) -> Optional[BeamSearchDecoder]:
    """The decoder for a command's options (None = greedy); a bad LM ends the command with one line."""
    from ..decoding import parse_hotwords

    try:
        return make_decoder(model.config.vocab, chosen_lm(args), args.beam_size, getattr(args, "lm_weight", None),
                            getattr(args, "word_score", None), parse_hotwords(getattr(args, "hotword", None) or []),
                            getattr(args, "silence_score", None))
    except (ValueError, OSError, RuntimeError) as e:
        raise SystemExit(f"asr: error: {e}") from None
