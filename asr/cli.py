"""Command line: `asr transcribe`, `asr train`, `asr eval`, ... (also `python -m asr`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from .audio import AudioError

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "model.pt"


def error(message: str) -> None:
    print(f"asr: error: {message}", file=sys.stderr, flush=True)


def load_model(path: Optional[str]):
    from .model import AcousticModel

    if path is None:
        if not DEFAULT_MODEL.exists():
            raise SystemExit("asr: error: no model given and no bundled model at "
                             f"{DEFAULT_MODEL}; pass --model PATH (a checkpoint from `asr train`)")
        path = str(DEFAULT_MODEL)
    try:
        return AcousticModel.load(path)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"asr: error: {e}") from None


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .audio import load_audio
    from .features import SAMPLE_RATE
    from .streaming import StreamingRecognizer
    from .transcribe import transcribe

    model = load_model(args.model)
    failures = 0
    for file in args.files:
        try:
            audio = load_audio(file)
        except AudioError as e:
            error(str(e))
            failures += 1
            continue
        if args.stream_chunk_ms:
            recognizer = StreamingRecognizer(model)
            step = max(1, int(SAMPLE_RATE * args.stream_chunk_ms / 1000))
            for i in range(0, len(audio), step):
                recognizer.accept(audio[i:i + step])
            text = recognizer.finish().text
        else:
            text = transcribe(model, audio).text
        print(f"{file}: {text}", flush=True)
    # Non-zero only when nothing at all could be transcribed, so batch jobs keep partial results.
    return 1 if failures and failures == len(args.files) else 0


def cmd_listen(args: argparse.Namespace) -> int:
    from .listen import run

    return run(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, print_summary

    model = load_model(args.model)
    try:
        rates = evaluate(model, args.data, Path(args.output) if args.output else None)
    except ValueError as e:
        error(str(e))
        return 1
    print_summary("asr eval", rates)
    print(f"data: {', '.join(args.data)}")
    if args.output:
        print(f"per-utterance errors: {args.output}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import run

    return run(args)


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import download_librispeech, load_manifest

    failures = 0
    for subset in args.subsets:
        try:
            folder = download_librispeech(subset, Path(args.dest))
        except (RuntimeError, ValueError, OSError) as e:
            error(str(e))
            failures += 1
            continue
        utts = load_manifest(folder)
        print(f"{subset}: {folder} ({len(utts)} utterances, {sum(u.duration for u in utts) / 3600:.1f} h)")
    return 1 if failures else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run

    return run(args)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_step, quantize

    model = load_model(args.model)
    try:
        path = export_step(quantize(model) if args.int8 else model, args.output)
    except (ValueError, OSError, ImportError) as e:  # ImportError: onnx missing (pip install -e .[export])
        error(str(e))
        return 1
    print(f"{path}: step(features (1, T, {model.config.n_mels}) with T a multiple of {model.config.stack}, "
          f"state ({model.config.layers}, 1, {model.config.hidden})) -> (logits, new_state)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="Streaming GRU-CTC speech recognition")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transcribe", help="transcribe audio files (wav, flac, ogg, mp3)")
    p.add_argument("files", nargs="+", help="audio files")
    p.add_argument("--model", help=f"model checkpoint (default: bundled {DEFAULT_MODEL.name})")
    p.add_argument("--stream-chunk-ms", type=float, default=0,
                   help="run the file through the streaming recognizer in chunks of N ms")
    p.set_defaults(func=cmd_transcribe)

    from .listen import add_arguments as add_listen_arguments

    p = sub.add_parser("listen", help="live transcription from a microphone (Ctrl-C to stop)")
    add_listen_arguments(p)
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("eval", help="WER/CER over LibriSpeech-layout folders or jsonl manifests")
    p.add_argument("data", nargs="+", help="corpus folders (speaker/chapter/*.flac + *.trans.txt) or manifests")
    p.add_argument("--model", help="model checkpoint (default: bundled)")
    p.add_argument("--output", help="write per-utterance reference, hypothesis and errors (jsonl) here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("prepare", help="download + extract LibriSpeech subsets from OpenSLR, build manifests")
    p.add_argument("subsets", nargs="+", help="e.g. train-clean-100 dev-clean test-clean")
    p.add_argument("--dest", default="data", help="download folder (default: data)")
    p.set_defaults(func=cmd_prepare)

    # Listed for --help only: main() hands `asr synth ...` to asr.synthesize's own parser.
    sub.add_parser("synth", help="generate a synthetic multi-voice corpus (see recipes/synthetic)")

    from .train import add_arguments

    p = sub.add_parser("train", help="train a model with CTC (torchrun for several processes)")
    add_arguments(p)
    p.set_defaults(func=cmd_train)

    from .bench import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="speed/latency/memory/throughput table (+ int8, LSTM, PocketSphinx)")
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("export", help="export the streaming step (state in, state out) to ONNX or TorchScript")
    p.add_argument("--model", help="model checkpoint (default: bundled)")
    p.add_argument("--output", required=True, help="step.onnx (needs onnx; pip install -e .[export]) or step.pt")
    p.add_argument("--int8", action="store_true", help="quantize GRU/Linear weights to int8 first (TorchScript only)")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["synth"]:  # its own parser owns all of its options, --help included
        from .synthesize import main as synth_main

        return synth_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
