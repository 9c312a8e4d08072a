"""CTC training: augmentation, bucketing, warmup+cosine schedule, dev WER, exact resume, DDP.

Launch on one process with `asr train ...`, or on several with
`torchrun --nproc_per_node N -m asr.train ...` (gloo on CPU, nccl on GPUs).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..features import LogMel, RunningStats, batch_lengths
from .augment import WaveformAugment, frequency_warp, spec_augment
from ..model import AcousticModel, ModelConfig, atomic_torch_save, widen_hidden, widen_lookahead
from ..tokenizer import Tokenizer
from ..utils import atomic_path, cpuinfo_field

if TYPE_CHECKING:
    from .data import Utterance


@dataclass
class TrainConfig:
    train: list[str]  # LibriSpeech-layout folders or .jsonl manifests
    dev: list[str]
    out: str = "exp/run"
    # Held-out sets (manifests, folders, text files): training utterances that speak one of their sentences
    # (2+ words; single words such as digits and commands are vocabulary, not sentences) are dropped.
    exclude: list[str] = field(default_factory=list)
    # {manifest source: times per epoch}: 2 upsamples; 0.5 keeps a seeded half (the same half every epoch)
    repeat: dict[str, float] = field(default_factory=dict)
    epochs: int = 20
    max_steps: int = 0  # stop after this many optimizer steps in total (0 = no limit)
    batch_seconds: float = 160.0  # padded audio seconds per batch (per process)
    lr: float = 1.5e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    final_lr_fraction: float = 0.05
    clip: float = 5.0
    # SpecAugment on the 10 ms log-mel frames
    freq_masks: int = 2
    freq_mask_width: int = 12
    time_masks: int = 2
    time_mask_width: int = 25
    freq_warp: float = 0.0  # VTLP-like warp of the log-mel frequency axis by a factor in 1 +- freq_warp
    # waveform augmentation
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    noise_prob: float = 0.5
    noise: list[str] = field(default_factory=list)  # background-noise recordings (files/folders) to mix in
    real_noise_fraction: float = 0.75  # of the noisy utterances, how many get a recording (rest: white/brown)
    snr_db: tuple[float, float] = (10.0, 40.0)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    reverb_prob: float = 0.0  # chance of a room: simulated (rir_bank) or a synthetic decaying tail
    rir_bank: str = ""  # .npz of room impulse responses (simulated with pyroomacoustics if missing)
    eq_prob: float = 0.0  # chance of a random channel: band limits (phone..wideband) and a +-8 dB peak
    codec_prob: float = 0.0  # chance of a lossy codec: 8 kHz mu-law or GSM, low-bitrate Opus or MP3
    init: str = ""  # start from this model's weights and feature stats (fine-tuning); its config wins
    precision: str = "fp32"  # or "bf16" (CPU autocast), or "auto": bf16 where the CPU has it natively
    dev_max_utterances: int = 400
    stats_utterances: int = 400
    save_every_steps: int = 200
    num_workers: int = 1
    threads: int = 0  # intra-op threads for the training process; 0 = cores not used by loader workers
    seed: int = 0
    model: dict = field(default_factory=dict)  # ModelConfig overrides (hidden, layers, stack, ...)


# ---------------------------------------------------------------- loss


def ctc_loss(model: torch.nn.Module, logmel: LogMel, batch: dict, cfg: Optional[TrainConfig] = None,
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Mean CTC loss of a collated batch; SpecAugment applied when cfg and generator are given."""
    feats = logmel(batch["waveforms"])
    lengths = batch_lengths(batch["waveform_lengths"])
    if cfg is not None and generator is not None:
        feats = spec_augment(frequency_warp(feats, cfg, generator), lengths, cfg, generator)
    logits, out_lengths, _ = model(feats, lengths, exact_final_state=False)
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, V) for ctc_loss
    return F.ctc_loss(log_probs, batch["targets"], out_lengths, batch["target_lengths"],
                      blank=0, zero_infinity=True)


# ---------------------------------------------------------------- helpers


def lr_lambda(cfg: TrainConfig, total_steps: int):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return cfg.final_lr_fraction + (1 - cfg.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def feature_stats(utterances: list, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean/std of log-mel over an evenly spaced subset of the training data (no augmentation)."""
    from ..audio import AudioError, load_audio

    logmel = LogMel()
    stats = RunningStats()
    step = max(1, len(utterances) // max(1, n))
    for utt in utterances[::step][:n]:
        try:
            stats.add(logmel(torch.from_numpy(load_audio(utt.path))))
        except AudioError:
            continue
    return stats.result()


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train CTC loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [100 * h["dev_wer"] for h in history], "s-", color="tab:red", label="dev WER")
    ax2.set_ylabel("dev WER (%)", color="tab:red")
    fig.suptitle("training progress")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def log(msg: str) -> None:
    if _rank() == 0:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- training


class _Indexed(torch.utils.data.Dataset):
    """Passes the item index to the augmentation so its randomness is a pure function of (seed, epoch, index)."""

    def __init__(self, dataset, augment: Optional[WaveformAugment]):
        self.dataset, self.augment = dataset, augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        item = self.dataset[i]
        if item is not None and self.augment is not None:
            item["waveform"] = torch.from_numpy(self.augment(item["waveform"].numpy(), i))
        return item


def evaluate_dev(model: AcousticModel, dev_utts: list, tokenizer: Tokenizer, batch_seconds: float) -> dict:
    from .data import BucketingBatchSampler, SpeechDataset, collate
    from .evaluate import error_rates, recognize_batches

    ds = SpeechDataset(dev_utts, tokenizer)
    sampler = BucketingBatchSampler([u.duration for u in dev_utts], batch_seconds, shuffle=False)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
    rows = list(recognize_batches(model, loader))
    return error_rates([r for _, r, _, _ in rows], [h for _, _, h, _ in rows]).as_dict()


def train(cfg: TrainConfig) -> dict:
    """Runs (or resumes) training; returns the final history entry. Writes to cfg.out:
    last.pt (full state, for resume), best.pt (model with the best dev WER), history.json, progress.png."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .data import BucketingBatchSampler, SpeechDataset, collate, held_out_sentences, load_manifest

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = _rank(), _world()
    # Oversubscribed cores make OpenMP spin-waits catastrophically slow (measured ~50x on the GRU
    # backward), so the trainer only takes the cores its loader workers leave free.
    cores = max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(cfg.threads or max(1, cores - cfg.num_workers))
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    train_utts = load_manifest(cfg.train)
    if cfg.exclude:
        held = held_out_sentences(cfg.exclude)
        kept = [u for u in train_utts if u.text not in held]
        log(f"--exclude: {len(train_utts) - len(kept)} training utterances speak a held-out sentence; dropped")
        train_utts = kept
    if cfg.repeat:
        train_utts = repeat_sources(train_utts, cfg.repeat, cfg.seed)
    dev_utts = load_manifest(cfg.dev)[: cfg.dev_max_utterances] if cfg.dev else []
    if not train_utts:
        raise SystemExit(f"asr train: no usable training utterances in {cfg.train}")
    init = AcousticModel.load(cfg.init) if cfg.init else None
    if init is not None and cfg.model.get("lookahead", 0) > init.config.lookahead:
        init = widen_lookahead(init, cfg.model["lookahead"])  # same function at step 0; training learns the future
    if init is not None and cfg.model.get("hidden", 0) > init.config.hidden:
        init = widen_hidden(init, cfg.model["hidden"], seed=cfg.seed)  # same function at step 0, more capacity
    if init is None:
        model_cfg = ModelConfig(**{k: v for k, v in cfg.model.items() if v is not None})
    else:
        # The init's architecture wins; dropout is only a training setting, so a given one replaces the init's.
        given = cfg.model.get("dropout")
        model_cfg = init.config if given is None else dataclasses.replace(init.config, dropout=given)
    tokenizer = Tokenizer(model_cfg.vocab)
    model = AcousticModel(model_cfg)

    sampler = BucketingBatchSampler([u.duration for u in train_utts], cfg.batch_seconds, shuffle=True,
                                    seed=cfg.seed, num_replicas=world, rank=rank)
    total_steps = cfg.epochs * len(sampler)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
    specaug_gen = torch.Generator()
    state: dict[str, Any] = {"step": 0, "epoch": 0, "position": 0, "history": [], "best_wer": None,
                             "epoch_loss_sum": 0.0, "epoch_loss_count": 0}

    last = out / "last.pt"
    if last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"]["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state.update(json.loads(ckpt["progress"]))
        torch.set_rng_state(ckpt["torch_rng"])
        specaug_gen.set_state(ckpt["specaug_rng"])
        log(f"resumed from {last} at step {state['step']} (epoch {state['epoch']}, batch {state['position']})")
    else:
        if init is not None:
            # Fine-tuning keeps the features the weights were trained on; word timing must be recalibrated.
            model.load_state_dict(init.state_dict())
            log(f"initialized from {cfg.init}")
        else:
            mean, std = feature_stats(train_utts, cfg.stats_utterances)
            model.normalizer.set_stats(mean, std)
        specaug_gen.manual_seed(cfg.seed)
    log(f"model: {model.num_parameters() / 1e6:.2f} M parameters; {len(train_utts)} train utterances "
        f"({sum(u.duration for u in train_utts) / 3600:.2f} h), {len(sampler)} batches/epoch, {world} process(es)")

    ddp_model: torch.nn.Module = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model)
    logmel = LogMel(model_cfg.n_mels)
    augment = WaveformAugment(cfg)
    dataset = _Indexed(SpeechDataset(train_utts, tokenizer), augment)
    precision = resolve_precision(cfg.precision)
    if precision != cfg.precision:
        log(f"--precision auto: {precision} ({'native' if precision == 'bf16' else 'no native'} bf16 on this CPU)")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def save_last() -> None:
        if rank != 0:
            return
        atomic_torch_save({
            "model": model.checkpoint(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "progress": json.dumps(state), "torch_rng": torch.get_rng_state(),
            "specaug_rng": specaug_gen.get_state(), "train_config": json.dumps(dataclasses.asdict(cfg)),
        }, last)

    interactive = rank == 0 and sys.stderr.isatty()
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(),
                        disable=not interactive)
    audio_seconds, t_log = 0.0, time.time()
    done = state["step"] >= total_steps
    with progress:
        while state["epoch"] < cfg.epochs and not done:
            epoch = state["epoch"]
            sampler.set_epoch(epoch)
            sampler.load_state_dict({"epoch": epoch, "position": state["position"]})
            augment.epoch = epoch
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
                generator=torch.Generator().manual_seed(cfg.seed + epoch))
            task = progress.add_task("train", total=len(sampler), completed=state["position"], epoch=epoch,
                                     loss=float("nan"))
            ddp_model.train()
            t0 = time.time()
            for batch in loader:
                state["position"] += 1
                if batch is not None:
                    with autocast:
                        loss = ctc_loss(ddp_model, logmel, batch, cfg, specaug_gen)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                    optimizer.step()
                    loss_value = loss.item()
                    state["epoch_loss_sum"] += loss_value
                    state["epoch_loss_count"] += 1
                    state["last_loss"] = loss_value
                    # The last losses travel with the checkpoint: a resumed run can be checked against them.
                    state["recent_losses"] = (state.get("recent_losses", []) + [[state["step"] + 1, loss_value]])[-50:]
                    audio_seconds += float(batch["waveform_lengths"].sum()) / 16000
                scheduler.step()
                state["step"] += 1
                progress.update(task, advance=1, loss=state.get("last_loss", float("nan")))
                if not interactive and state["step"] % 50 == 0:  # logs and pipes get a line, not a bar
                    rate = audio_seconds / max(1e-9, time.time() - t_log)
                    log(f"step {state['step']}/{total_steps} epoch {epoch} loss {state.get('last_loss', 0):.3f} "
                        f"lr {scheduler.get_last_lr()[0]:.2e} {rate:.0f} audio-s/s")
                    audio_seconds, t_log = 0.0, time.time()
                if state["step"] % cfg.save_every_steps == 0:
                    save_last()
                if state["step"] >= total_steps:
                    done = True
                    break
            progress.remove_task(task)
            finished_epoch = state["position"] >= len(sampler)
            if finished_epoch or done:
                entry = {"epoch": epoch + 1 if finished_epoch else epoch + state["position"] / len(sampler),
                         "step": state["step"],
                         "train_loss": state["epoch_loss_sum"] / max(1, state["epoch_loss_count"]),
                         "seconds": round(time.time() - t0, 1)}
                if rank == 0 and dev_utts:
                    entry.update({f"dev_{k}": v for k, v in
                                  evaluate_dev(model, dev_utts, tokenizer, cfg.batch_seconds).items()})
                    if state["best_wer"] is None or entry["dev_wer"] < state["best_wer"]:
                        state["best_wer"] = entry["dev_wer"]
                        model.save(out / "best.pt")
                elif rank == 0:
                    model.save(out / "best.pt")
                state["history"].append(entry)
                log(json.dumps(entry))
                if finished_epoch:
                    state.update(epoch=epoch + 1, position=0, epoch_loss_sum=0.0, epoch_loss_count=0)
                save_last()
                if rank == 0:
                    (out / "history.json").write_text(json.dumps(state["history"], indent=1))
                    if dev_utts:
                        plot_history(state["history"], out / "progress.png")
            if world > 1:
                dist.barrier()
    if world > 1:
        check_replicas_identical(model, out)
    return state["history"][-1] if state["history"] else {}


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_replicas_identical(model: torch.nn.Module, out: Path) -> None:
    """DDP ranks must end bit-identical; a mismatch means a broken all-reduce or divergent data."""
    digests: list[Optional[str]] = [None] * _world()
    dist.all_gather_object(digests, weights_digest(model))
    if _rank() == 0:
        (out / "replicas.json").write_text(json.dumps({"world_size": _world(), "sha256": digests}, indent=1))
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP replicas diverged: weight digests {digests}")


# ---------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig(train=[], dev=[])
    p.add_argument("--train", nargs="+", required=True, help="LibriSpeech-layout folders or .jsonl manifests")
    p.add_argument("--dev", nargs="*", default=[], help="dev folders/manifests (for WER and best checkpoint)")
    p.add_argument("--out", default=d.out, help="experiment folder (checkpoints, history, plot)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="HELD_OUT",
                   help="dev/test manifests, folders or text files: drop training utterances that speak one of "
                        "their sentences (of 2+ words)")
    for name in ("epochs", "max_steps", "warmup_steps", "save_every_steps", "num_workers", "threads", "seed",
                 "dev_max_utterances", "stats_utterances"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("batch_seconds", "lr", "weight_decay", "clip", "noise_prob", "real_noise_fraction", "freq_warp",
                 "reverb_prob", "eq_prob", "codec_prob"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--speeds", type=float, nargs="*", default=d.speeds)
    p.add_argument("--spec-augment", type=int, nargs=4, default=None,
                   metavar=("FREQ_MASKS", "FREQ_WIDTH", "TIME_MASKS", "TIME_WIDTH"),
                   help="SpecAugment masks per utterance and their largest widths in mel bins and 10 ms frames "
                        f"(default {d.freq_masks} {d.freq_mask_width} {d.time_masks} {d.time_mask_width}; "
                        "0 0 0 0 turns it off)")
    p.add_argument("--repeat", nargs="*", default=[], metavar="SOURCE=N", type=_repeat_spec,
                   help="utterances whose manifest `source` is SOURCE appear N times per epoch: 2 upsamples, "
                        "1.5 adds a seeded half, 0.5 keeps a seeded half")
    p.add_argument("--snr-db", type=float, nargs=2, default=d.snr_db, metavar=("LOW", "HIGH"),
                   help="signal-to-noise ratio range of added noise (default %(default)s)")
    p.add_argument("--noise", nargs="*", default=[], metavar="PATH",
                   help="background-noise recordings (files or folders) mixed in at --snr-db with --noise-prob")
    p.add_argument("--rir-bank", default="", metavar="FILE.npz",
                   help="room impulse responses for --reverb-prob (simulated with pyroomacoustics and saved "
                        "there if the file is missing); without it, a synthetic decaying tail")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default=d.precision,
                   help="bf16 autocast was 2x faster where the CPU has native bf16 (AVX512-BF16, AMX) and ~10x "
                        "slower where it has not; auto picks it only where it is native (default %(default)s)")
    p.add_argument("--init", default="", metavar="MODEL",
                   help="fine-tune: start from this model (e.g. assets/model.pt); --layers/--stack are ignored")
    p.add_argument("--hidden", type=int, default=None,
                   help=f"GRU units per layer (default {ModelConfig.hidden}); with --init, a larger value widens the "
                        "model to it, starting from the same function")
    p.add_argument("--layers", type=int, default=ModelConfig.layers)
    p.add_argument("--stack", type=int, default=ModelConfig.stack)
    p.add_argument("--dropout", type=float, default=None,
                   help=f"between GRU layers (default {ModelConfig.dropout}, or the --init model's)")
    p.add_argument("--lookahead", type=int, default=ModelConfig.lookahead,
                   help="future steps (stack x 10 ms each) every output step sees: that much more latency "
                        "(default 0); with --init, widens the model's look-ahead to this, starting from the same function")


def resolve_precision(precision: str, cpu_flags: Optional[set[str]] = None) -> str:
    """'auto' -> 'bf16' on a CPU with native bf16 instructions, else 'fp32'; other values unchanged."""
    if precision != "auto":
        return precision
    if cpu_flags is None:  # not Linux: no flags, so fp32, the safe choice
        cpu_flags = set((cpuinfo_field("flags") or "").split())
    return "bf16" if cpu_flags & {"avx512_bf16", "amx_bf16"} else "fp32"


def repeat_sources(utts: Sequence[Utterance], repeat: dict[str, float], seed: int) -> list[Utterance]:
    """Each utterance of source S appears repeat[S] times per epoch (default 1): the whole part as copies,
    the fraction as a seeded sample of that source (1.5: every clip once, a seeded half twice)."""
    rng = random.Random(seed)
    extra: set[int] = set()
    for source, times in sorted(repeat.items()):
        members = [i for i, u in enumerate(utts) if u.source == source]
        extra.update(rng.sample(members, round((times % 1) * len(members))))
    return [u for i, u in enumerate(utts) for _ in range(int(repeat.get(u.source, 1)) + (i in extra))]


def _repeat_spec(spec: str) -> tuple[str, float]:
    source, _, n = spec.rpartition("=")
    try:
        times = float(n)
    except ValueError:
        times = -1.0
    if not source or not 0 < times < float("inf"):
        raise argparse.ArgumentTypeError(f"{spec!r}: expected SOURCE=N with N > 0 (0.5 keeps a seeded half)")
    return source, times


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "repeat"}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    cfg.repeat = dict(args.repeat)
    if args.spec_augment is not None:
        if min(args.spec_augment) < 0:
            raise SystemExit(f"--spec-augment {' '.join(map(str, args.spec_augment))}: counts and widths must be >= 0")
        cfg.freq_masks, cfg.freq_mask_width, cfg.time_masks, cfg.time_mask_width = args.spec_augment
    cfg.model = {"layers": args.layers, "stack": args.stack, "dropout": args.dropout, "lookahead": args.lookahead}
    if args.hidden:  # only when given: with --init, it asks for widening
        cfg.model["hidden"] = args.hidden
    return cfg


def run(args: argparse.Namespace) -> int:
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        result = train(config_from_args(args))
        if _rank() == 0 and result:
            print(json.dumps(result))
        if distributed:
            # Leave together: a rank tearing down gloo while a peer still holds its connection died with
            # "terminate called without an active exception" (SIGABRT) in ~1 of 3 two-process runs here.
            dist.barrier()
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="asr train", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
