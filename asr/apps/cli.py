"""Command line: `asr transcribe`, `asr train`, `asr eval`, ... (also `python -m asr`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from ..lm import LM_BEAM_SIZE
from .common import add_decoder_arguments, command_decoder, error
from .common import command_model as load_model


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .batch import cmd_transcribe as run

    return run(args)


def cmd_listen(args: argparse.Namespace) -> int:
    from .listen import run

    return run(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..training.evaluate import evaluate, pocketsphinx_recognizer, print_summary, speaker_groups

    model = load_model(args.model, args.int8)
    decoder = command_decoder(model, args)
    try:
        groups = (args.groups if args.groups == "source" else speaker_groups(args.groups)) if args.groups else None
        peer = pocketsphinx_recognizer() if args.peer == "pocketsphinx" else None
        ev = evaluate(model, args.data, Path(args.output) if args.output else None, peer=peer, decoder=decoder)
    except (ValueError, OSError) as e:
        error(str(e))
        return 1
    print_summary("asr eval", ev, groups, args.peer or "")
    print(f"data: {', '.join(args.data)}")
    if args.output:
        print(f"per-utterance errors: {args.output}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.train import run

    return run(args)


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..training.data import download_librispeech, load_manifest

    failures = 0
    for subset in args.subsets:
        if subset == "asterisk":  # Debian's Asterisk prompts: a real-speech test set on this machine
            from ..training.asterisk import prepare

            try:
                done = prepare(Path(args.dest) / "asterisk")
            except (RuntimeError, ValueError, OSError) as e:
                error(str(e))
                failures += 1
                continue
            utts = load_manifest(done.manifest)
            print(f"asterisk: {done.manifest} ({len(utts)} prompts, {sum(u.duration for u in utts) / 60:.1f} min)")
            continue
        try:
            folder = download_librispeech(subset, Path(args.dest))
        except (RuntimeError, ValueError, OSError) as e:
            error(str(e))
            failures += 1
            continue
        utts = load_manifest(folder)
        print(f"{subset}: {folder} ({len(utts)} utterances, {sum(u.duration for u in utts) / 3600:.1f} h)")
    return 1 if failures else 0


def cmd_revoice(args: argparse.Namespace) -> int:
    from ..training.revoice import run

    return run(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run

    return run(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import run

    return run(args)


def cmd_export(args: argparse.Namespace) -> int:
    from ..model import quantize
    from .export import export_step

    model = load_model(args.model)
    try:
        path = export_step(quantize(model) if args.int8 else model, args.output)
    except (ValueError, OSError, ImportError) as e:  # ImportError: onnx missing (pip install -e .[export])
        error(str(e))
        return 1
    print(f"{path}: step(features (1, T, {model.config.n_mels}) with T a multiple of {model.config.stack}, "
          f"state ({model.config.layers}, 1, {model.config.hidden})) -> (logits, new_state)"
          + (f"; look-ahead {model.config.lookahead} steps: logits for all but the last "
             f"{model.config.lookahead} steps (see asr/export.py)" if model.config.lookahead else ""))
    return 0


def cmd_calibrate_timing(args: argparse.Namespace) -> int:
    from ..training import timing
    from ..model import AcousticModel, atomic_torch_save, read_checkpoint
    from ..training.synthesize import SynthesisError

    try:
        ckpt, inner = read_checkpoint(args.model)  # the whole file: a training checkpoint keeps its optimizer
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"asr: error: {e}") from None
    model = AcousticModel.from_checkpoint(inner)
    try:
        data = timing.cases()
        before = timing.measure(model, data, delay=(0.0, 0.0))
        model.word_delay = timing.median_delay(before)
        after = timing.measure(model, data)
    except (ValueError, OSError, SynthesisError) as e:  # SynthesisError: a TTS engine is missing or failed
        error(str(e))
        return 1
    print(f"uncorrected: {timing.summary(before)}")
    print(f"corrected:   {timing.summary(after)}")
    print(f"word delay: start {model.word_delay[0]:.3f} s, end {model.word_delay[1]:.3f} s")
    output = args.output or args.model
    inner["word_delay"] = list(model.word_delay)
    atomic_torch_save(ckpt, output)
    print(f"saved to {output}")
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from ..model import average_checkpoints

    try:
        soup = average_checkpoints(args.models)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"asr: error: {e}") from None
    soup.save(args.output)
    print(f"{args.output}: mean of {len(args.models)} checkpoints ({soup.num_parameters():,} parameters)")
    return 0


def cmd_lm(args: argparse.Namespace) -> int:
    from ..training import lm

    try:
        if args.lm_command == "build" and args.kenlm:
            from ..training.kenlm import KenLMError, run_build

            try:
                info = run_build(args)
            except KenLMError as e:
                error(str(e))
                return 1
            print(f"{args.output}: order {info.get('order')}, {info.get('sentences')} sentences kept, "
                  f"{info.get('excluded')} excluded; details in {Path(args.output).with_suffix('.build.json')}")
            return 0
        if args.lm_command == "build":
            from ..training.data import held_out_sentences

            held = held_out_sentences(args.exclude, args.exclude_min_words) if args.exclude else set()
            text = (s for s in lm.read_sentences(args.sources) if s not in held)
            info = lm.build_arpa(text, args.output, args.order or 3)
            print(f"{args.output}: order {info['order']}, {info['sentences']} sentences, {info['words']} words, "
                  f"vocabulary {info['vocabulary']}, n-grams {info['ngrams']}")
            return 0
        model = load_model(args.model)
        if args.lm_command == "tune":
            lm.tune(model, args.lm, args.data, args.lm_weights, args.word_scores, args.beam_size, args.limit,
                    metric=args.metric, silence_scores=args.silence_scores, jobs=args.jobs)
            return 0
        from ..transcribe import make_decoder

        data = lm.corpus_logits(model, args.data, args.limit)
        greedy = lm.score_decoder(data, model.config.vocab)
        beam = lm.score_decoder(data, model.config.vocab, make_decoder(model.config.vocab, args.lm, args.beam_size))
        print(f"{len(data)} utterances, {greedy.words} words: greedy WER {100 * greedy.wer:.2f}% CER "
              f"{100 * greedy.cer:.2f}% | beam+LM WER {100 * beam.wer:.2f}% CER {100 * beam.cer:.2f}%")
        return 0
    except (ValueError, OSError) as e:
        error(str(e))
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="Streaming GRU-CTC speech recognition")
    sub = parser.add_subparsers(dest="command", required=True)

    from .batch import add_arguments as add_transcribe_arguments

    p = sub.add_parser("transcribe", help="transcribe audio files and folders (wav, flac, ogg, opus, mp3), in "
                                          "parallel, resumable, or on a Ray cluster (docs/batch.md)")
    add_transcribe_arguments(p)
    p.set_defaults(func=cmd_transcribe)

    from .listen import add_arguments as add_listen_arguments

    p = sub.add_parser("listen", help="live transcription from a microphone (Ctrl-C to stop)")
    add_listen_arguments(p)
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("eval", help="WER/CER over LibriSpeech-layout folders or jsonl manifests")
    p.add_argument("data", nargs="+", help="corpus folders (speaker/chapter/*.flac + *.trans.txt) or manifests")
    p.add_argument("--model", help="model checkpoint (default: bundled)")
    p.add_argument("--int8", action="store_true", help="evaluate the int8-quantized model")
    add_decoder_arguments(p, hotwords=False)
    p.add_argument("--output", help="write per-utterance reference, hypothesis and errors (jsonl) here")
    p.add_argument("--peer", choices=["pocketsphinx"], help="also run this recognizer on the same audio")
    p.add_argument("--groups", metavar="source|TSV:COLUMN",
                   help="break results down by corpus (`source`: the manifest field, else each folder/manifest) "
                        "or by a speaker table column, e.g. data/synth/SPEAKERS.tsv:engine")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("lm", help="word n-gram LM for beam search: build (ARPA), tune weights, eval")
    lm_sub = p.add_subparsers(dest="lm_command", required=True)
    q = lm_sub.add_parser("build", help="modified Kneser-Ney n-gram LM from text files, manifests, LibriSpeech "
                                        "folders: ARPA in pure Python, or with --kenlm a pruned KenLM binary")
    q.add_argument("sources", nargs="+", help="text files (one sentence a line; --kenlm also reads .xz/.gz), "
                                              "jsonl manifests or folders with *.trans.txt")
    q.add_argument("-o", "--output", required=True, help="LM file to write (ARPA; with --kenlm a binary + "
                                                         "OUT.words.txt unless --arpa)")
    q.add_argument("--order", type=int, default=None, help="n-gram order (default: 3; 4 with --kenlm)")
    q.add_argument("--kenlm", action="store_true",
                   help="build with KenLM's lmplz (large text, pruning, vocabulary caps, binary output; "
                        "its tools are built once from the kenlm sdist)")
    from ..training.kenlm import add_build_arguments as add_kenlm_arguments

    add_kenlm_arguments(q, common=False)
    q = lm_sub.add_parser("tune", help="grid-search LM weight and word score on a dev set; saves LM.json")
    q.add_argument("data", nargs="+", help="dev corpus folders or manifests")
    q.add_argument("--model", help="model checkpoint (default: bundled)")
    q.add_argument("--lm", required=True, help="ARPA file")
    # With the wide default beam the best weight is higher than with a narrow one (2.0 at beam 512 vs 1.5 at 32
    # on the synthetic dev set), and weights below 0.5 never won: the grid leaves them out.
    q.add_argument("--lm-weights", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 2.5])
    q.add_argument("--word-scores", type=float, nargs="+", default=[-1.0, 0.0, 1.0, 2.0])
    # Only 0 by default: each value multiplies the grid's decoding time. A negative silence score paid on the
    # synthetic dev set together with a higher word score (README, accuracy).
    q.add_argument("--silence-scores", type=float, nargs="+", default=[0.0],
                   help="word-boundary scores to try (default: 0 only), e.g. 0 -1 -2")
    q.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="decode this many grid points at once (default: all cores)")
    q.add_argument("--beam-size", type=int, default=LM_BEAM_SIZE)
    q.add_argument("--metric", choices=["wer", "cer"], default="wer",
                   help="pick the setting with the lowest dev WER (default) or CER")
    q.add_argument("--limit", type=int, help="use only the first N utterances")
    q = lm_sub.add_parser("eval", help="WER of greedy vs beam search + LM (tuned settings) on a corpus")
    q.add_argument("data", nargs="+", help="corpus folders or manifests")
    q.add_argument("--model", help="model checkpoint (default: bundled)")
    q.add_argument("--lm", required=True, help="ARPA file (its tuned LM.json is used when present)")
    q.add_argument("--beam-size", type=int, default=LM_BEAM_SIZE)
    q.add_argument("--limit", type=int, help="use only the first N utterances")
    p.set_defaults(func=cmd_lm)

    p = sub.add_parser("prepare", help="download + extract LibriSpeech subsets from OpenSLR, build manifests; "
                                        "`asterisk`: Debian's Asterisk prompts as a test set")
    p.add_argument("subsets", nargs="+", help="e.g. train-clean-100 dev-clean test-clean, or asterisk (decodes the "
                                              "installed asterisk-core-sounds-en-g722 prompts with ffmpeg)")
    p.add_argument("--dest", default="data", help="download folder (default: data)")
    p.set_defaults(func=cmd_prepare)

    # Listed for --help only: main() hands `asr synth ...` to asr.synthesize's own parser.
    sub.add_parser("synth", help="generate a synthetic multi-voice corpus (see recipes/synthetic)")

    from ..training.revoice import add_arguments as add_revoice_arguments

    p = sub.add_parser("revoice", help="new voices from a corpus's audio (WORLD vocoder: formants, F0 changed)")
    add_revoice_arguments(p)
    p.set_defaults(func=cmd_revoice)

    from ..training.train import add_arguments

    p = sub.add_parser("train", help="train a model with CTC (torchrun for several processes)")
    add_arguments(p)
    p.set_defaults(func=cmd_train)

    from .bench import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="speed/latency/memory/throughput table (+ int8, LSTM, PocketSphinx)")
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    from .serve import add_arguments as add_serve_arguments

    p = sub.add_parser("serve", help="streaming WebSocket server, file transcription over HTTP, a browser page")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("calibrate-timing", help="measure how late the model emits words; store the correction")
    p.add_argument("model", help="model checkpoint to calibrate (updated in place unless --output)")
    p.add_argument("--output", help="write the calibrated checkpoint here instead")
    p.set_defaults(func=cmd_calibrate_timing)

    p = sub.add_parser("average", help="average the weights of fine-tunes of one model (a model soup)")
    p.add_argument("models", nargs="+", help="model or training checkpoints (best.pt, last.pt)")
    p.add_argument("-o", "--output", required=True, help="checkpoint to write")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("export", help="export the streaming step (state in, state out) to ONNX or TorchScript")
    p.add_argument("--model", help="model checkpoint (default: bundled)")
    p.add_argument("--output", required=True, help="step.onnx (needs onnx; pip install -e .[export]) or step.pt")
    p.add_argument("--int8", action="store_true", help="quantize GRU/Linear weights to int8 first (TorchScript only)")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["synth"]:  # its own parser owns all of its options, --help included
        from ..training.synthesize import main as synth_main

        return synth_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
