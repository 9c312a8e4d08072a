"""The acoustic model: normalized log-mel -> frame stacking -> unidirectional GRU stack -> CTC logits."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import nn

from .features import N_MELS, FeatureNormalizer
from .tokenizer import DEFAULT_VOCAB, Tokenizer
from .utils import atomic_path


@dataclass
class ModelConfig:
    n_mels: int = N_MELS
    stack: int = 3  # frames stacked (and subsampled): 3 x 10 ms -> one 30 ms step
    hidden: int = 320
    layers: int = 4
    dropout: float = 0.1
    rnn: str = "gru"  # "lstm" exists only to measure the GRU-vs-LSTM claim
    # Output step t also sees the stacked input steps t+1..t+lookahead (latency + lookahead x stack x 10 ms):
    # a unidirectional GRU otherwise decides each step without hearing what follows it.
    lookahead: int = 0
    vocab: list[str] = field(default_factory=lambda: list(DEFAULT_VOCAB))


State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


class AcousticModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tokenizer = Tokenizer(config.vocab)
        self.normalizer = FeatureNormalizer(config.n_mels)
        self.input = nn.Sequential(nn.Linear(config.n_mels * config.stack * (1 + config.lookahead), config.hidden),
                                   nn.ReLU())
        rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM}[config.rnn]
        self.rnn = rnn_cls(config.hidden, config.hidden, num_layers=config.layers, batch_first=True,
                           dropout=config.dropout if config.layers > 1 else 0.0)
        self.head = nn.Linear(config.hidden, len(config.vocab))
        # Seconds by which word starts/ends are emitted late; measured by `asr calibrate-timing` (asr.timing), not learned.
        self.word_delay: tuple[float, float] = (0.0, 0.0)

    @property
    def frame_shift(self) -> float:
        """Seconds of audio per output step."""
        return 0.01 * self.config.stack

    def forward(
        self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None, state: Optional[State] = None,
        exact_final_state: bool = True, final: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """features (B, T, n_mels) raw log-mel; returns logits (B, T // stack, V), their lengths, new state.

        Logits of valid steps never depend on padding (the GRU is causal; look-ahead sees zeros
        past each utterance's end). The returned state does: with exact_final_state it is each
        utterance's own (via packing, ~4x slower to train on CPU); training, which discards the
        state, passes False.

        Trailing frames that do not fill a whole stack are ignored; the streaming runner keeps them
        for the next chunk instead. With look-ahead and final=False (a stream's middle; batch 1),
        the last `lookahead` steps get no logits yet: their future is in the next chunk.
        """
        b, t, _ = features.shape
        s, k = self.config.stack, self.config.lookahead
        steps = t // s
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long)
        out_lengths = torch.div(lengths, s, rounding_mode="floor")
        x = self.normalizer(features[:, : steps * s]).reshape(b, steps, s * self.config.n_mels)
        if k:
            if final:  # an utterance's future past its end is zeros (= the mean frame), whatever pads the batch
                valid = torch.arange(steps, device=x.device)[None, :] < out_lengths.to(x.device)[:, None]
                x = x * valid.unsqueeze(-1).to(x.dtype)
                x = nn.functional.pad(x, (0, 0, 0, k))
            else:
                steps = max(steps - k, 0)
                out_lengths = out_lengths.clamp(max=steps)
            x = with_lookahead(x, k, steps)
        x = self.input(x)
        if steps == 0:
            return x.new_zeros(b, 0, len(self.config.vocab)), out_lengths, self._initial_state(b, x) if state is None else state
        if exact_final_state and b > 1 and bool((out_lengths != steps).any()):
            # Packing makes the returned state the one after each utterance's own last step.
            packed = nn.utils.rnn.pack_padded_sequence(x, out_lengths.clamp(min=1).cpu(), batch_first=True,
                                                       enforce_sorted=False)
            initial = self._initial_state(b, x) if state is None else state
            out, state = self.rnn(packed, initial)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)
            empty = out_lengths == 0
            if bool(empty.any()):  # packing needs >= 1 step; an empty utterance keeps its incoming state
                state = _select_state(empty, initial, state)
        else:
            out, state = self.rnn(x, state)
        return self.head(out), out_lengths, state

    def _initial_state(self, batch: int, like: torch.Tensor) -> State:
        h = like.new_zeros(self.config.layers, batch, self.config.hidden)
        return (h, h.clone()) if self.config.rnn == "lstm" else h

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def checkpoint(self) -> dict:
        """Everything needed to rebuild the model: config, vocabulary, normalization stats, weights."""
        return {"format": CHECKPOINT_FORMAT, "config": dataclasses.asdict(self.config),
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                "word_delay": list(self.word_delay)}

    def save(self, path: Union[str, Path]) -> None:
        atomic_torch_save(self.checkpoint(), path)

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "AcousticModel":
        model = cls(ModelConfig(**ckpt["config"]))
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
        model.load_state_dict(state)
        model.word_delay = tuple(float(x) for x in ckpt.get("word_delay", (0.0, 0.0)))
        return model.eval()

    @classmethod
    def load(cls, path: Union[str, Path]) -> "AcousticModel":
        """The model in a checkpoint file; FileNotFoundError / ValueError with one line naming the file."""
        inner = read_checkpoint(path)[1]
        try:
            return cls.from_checkpoint(inner)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            # Weights that do not fit the config (another architecture or version), a config field of the
            # wrong type, ...: load_state_dict's message lists every tensor, so say what kind of problem it is.
            reason = "weights do not match its config" if isinstance(e, RuntimeError) else _first_line(e)
            raise ValueError(f"{path}: not a usable asr model checkpoint ({reason})") from None


def with_lookahead(x: torch.Tensor, k: int, steps: int) -> torch.Tensor:
    """(B, steps + k, D) -> (B, steps, D * (k + 1)): step t followed by its next k steps."""
    return torch.cat([x[:, i:i + steps] for i in range(k + 1)], dim=-1)


def widen_lookahead(model: AcousticModel, lookahead: int) -> AcousticModel:
    """A copy of `model` with more look-ahead that computes the same function until trained.

    The new future inputs get zero weights, so fine-tuning (`asr train --init ... --lookahead N`)
    starts exactly from the old model and learns how much of the future to use.
    """
    old = model.config.lookahead
    if lookahead < old:
        raise ValueError(f"cannot shrink look-ahead from {old} to {lookahead} steps")
    wide = AcousticModel(dataclasses.replace(model.config, lookahead=lookahead))
    state = model.state_dict()
    weight = state["input.0.weight"]
    state["input.0.weight"] = torch.cat([weight, weight.new_zeros(weight.shape[0], weight.shape[1] // (1 + old)
                                                                  * (lookahead - old))], dim=1)
    wide.load_state_dict(state)
    wide.word_delay = model.word_delay
    return wide.eval()


def widen_hidden(model: AcousticModel, hidden: int, seed: int = 0, noise: float = 1e-3) -> AcousticModel:
    """A copy of a GRU `model` with `hidden` units per layer that computes the same function (Net2WiderNet).

    Each new unit copies a randomly chosen old unit of its layer (its input projection, GRU rows and
    biases); every weight that reads a layer's output divides the copied unit's column among its
    copies. With a zero initial state a copy's state equals its original's at every step, so the
    logits are unchanged. `noise` (relative to each weight's std) then breaks the copies' symmetry so
    fine-tuning (`asr train --init ... --hidden N`) can make them differ.
    """
    old = model.config.hidden
    if model.config.rnn != "gru":
        raise ValueError("only GRU models can be widened")
    if hidden < old:
        raise ValueError(f"cannot shrink the model from {old} to {hidden} hidden units")
    wide = AcousticModel(dataclasses.replace(model.config, hidden=hidden))
    wide.word_delay = model.word_delay
    if hidden == old:
        wide.load_state_dict(model.state_dict())
        return wide.eval()
    gen = torch.Generator().manual_seed(seed)

    def mapping() -> torch.Tensor:  # new unit -> old unit it copies
        return torch.cat([torch.arange(old), torch.randint(0, old, (hidden - old,), generator=gen)])

    def rows(w: torch.Tensor, g: torch.Tensor, gates: int = 1) -> torch.Tensor:
        # GRU tensors stack the r, z, n gates along dim 0: map each gate's block.
        return torch.cat([block[g] for block in w.chunk(gates, dim=0)], dim=0)

    def columns(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return w[:, g] / torch.bincount(g, minlength=old)[g].to(w.dtype)

    def jitter(w: torch.Tensor) -> torch.Tensor:
        return w + noise * w.std() * torch.randn(w.shape, generator=gen)

    state = model.state_dict()
    new = dict(state)
    g_in = mapping()  # units of the input projection
    new["input.0.weight"] = rows(state["input.0.weight"], g_in)
    new["input.0.bias"] = rows(state["input.0.bias"], g_in)
    below = g_in
    for layer in range(model.config.layers):
        g = mapping()
        ih, hh = f"rnn.weight_ih_l{layer}", f"rnn.weight_hh_l{layer}"
        new[ih] = jitter(columns(rows(state[ih], g, 3), below))
        new[hh] = jitter(columns(rows(state[hh], g, 3), g))
        for b in (f"rnn.bias_ih_l{layer}", f"rnn.bias_hh_l{layer}"):
            new[b] = rows(state[b], g, 3)
        below = g
    new["head.weight"] = columns(state["head.weight"], below)
    wide.load_state_dict(new)
    return wide.eval()


def average_checkpoints(paths: Sequence[Union[str, Path]]) -> AcousticModel:
    """The model whose weights are the mean of the given checkpoints' (a "model soup").

    Averaging only makes sense for fine-tunes of one common model (same config and feature statistics):
    they stay in one basin of the loss, and their mean is often better than each. Word timing comes from
    the first checkpoint (re-run `asr calibrate-timing` on the result if it matters).
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    models = [AcousticModel.load(p) for p in paths]
    first = models[0]
    for path, model in zip(paths[1:], models[1:]):
        if model.config != first.config:
            raise ValueError(f"{path}: config differs from {paths[0]}'s; only fine-tunes of one model can be averaged")
        for name in ("normalizer.mean", "normalizer.std"):
            if not torch.equal(model.state_dict()[name], first.state_dict()[name]):
                raise ValueError(f"{path}: feature statistics differ from {paths[0]}'s; not fine-tunes of one model")
    states = [m.state_dict() for m in models]
    mean = {k: sum(s[k].double() for s in states).div(len(states)).to(v.dtype) for k, v in states[0].items()}
    soup = AcousticModel(first.config)
    soup.load_state_dict(mean)
    soup.word_delay = first.word_delay
    return soup.eval()


# The bundled model: assets/ beside the package in a source checkout, installed with it by `pip install .`.
ASSETS = Path(__file__).resolve().parent / "assets" if (Path(__file__).resolve().parent / "assets").is_dir() \
    else Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS / "model.pt"


def load_model(path: Union[str, Path, None] = None, int8: bool = False) -> AcousticModel:
    """The checkpoint at `path` (default: the bundled model), optionally int8-quantized for CPU.

    Raises FileNotFoundError / ValueError with a one-line message naming the file."""
    if path is None:
        if not DEFAULT_MODEL.exists():
            raise FileNotFoundError(f"no model given and no bundled model at {DEFAULT_MODEL}; "
                                    "pass --model PATH (a checkpoint from `asr train`)")
        path = DEFAULT_MODEL
    model = AcousticModel.load(path)
    return quantize(model) if int8 else model


def quantize(model: AcousticModel) -> AcousticModel:
    """A copy of `model` with GRU/LSTM and Linear weights in int8 (dynamic quantization, CPU).

    Activations are quantized on the fly per call, so the int8 model is not bit-exact across
    chunkings the way fp32 is: each chunk's input projection gets its own activation scale.
    The difference is quantization noise (tests bound it), not a change of algorithm.
    """
    engines = torch.backends.quantized.supported_engines
    # fbgemm (x86) is the fast path; qnnpack covers ARM. Pick before quantizing: packing is engine-specific.
    for engine in ("fbgemm", "x86", "qnnpack"):
        if engine in engines:
            torch.backends.quantized.engine = engine
            break
    with warnings.catch_warnings():  # torch warns that quantized tensor creation is deprecated; it still works
        warnings.simplefilter("ignore", UserWarning)
        q = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).eval(), {nn.GRU, nn.LSTM, nn.Linear}, dtype=torch.qint8)
    q.int8 = True  # marker for reports (bench table, load messages)
    return q


def is_quantized(model: nn.Module) -> bool:
    return bool(getattr(model, "int8", False))


# Version of the checkpoint layout `checkpoint()` writes (files without the field are version 1). A reader
# refuses newer versions with a clear message instead of failing somewhere inside them.
CHECKPOINT_FORMAT = 1


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def read_checkpoint(path: Union[str, Path]) -> tuple[dict, dict]:
    """(the file's contents, the model's part of them): a training checkpoint nests the model under
    "model" beside optimizer state etc.; a model checkpoint is the model's part itself.

    FileNotFoundError / ValueError with one line naming the file when it is missing, truncated, corrupt,
    not an asr checkpoint, or from a newer version of asr."""
    if Path(path).is_dir():
        raise ValueError(f"{path}: is a directory, not a model checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: model file not found") from None
    except Exception as e:  # pickle/zip errors carry long messages; one line is enough
        hint = "truncated or corrupt" if isinstance(e, (RuntimeError, EOFError)) else "not a torch checkpoint"
        raise ValueError(f"{path}: not a valid asr model checkpoint ({hint}: {type(e).__name__})") from None
    inner = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt and "config" not in ckpt else ckpt
    if not isinstance(inner, dict) or "config" not in inner:
        raise ValueError(f"{path}: not an asr model checkpoint")
    version = inner.get("format", 1)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {version!r} is newer than this asr reads "
                         f"({CHECKPOINT_FORMAT}); upgrade asr")
    config, weights = inner["config"], inner.get("state_dict")
    if not isinstance(config, dict) or not isinstance(weights, dict):
        raise ValueError(f"{path}: not an asr model checkpoint (no config or weights)")
    unknown = sorted(set(config) - {f.name for f in dataclasses.fields(ModelConfig)})
    if unknown:
        raise ValueError(f"{path}: model config has fields this asr does not know ({', '.join(map(str, unknown))}): "
                         "written by another version?")
    return ckpt, inner


def _select_state(mask: torch.Tensor, a: State, b: State) -> State:
    """Per batch entry: `a` where mask is true, else `b` (state tensors are (layers, batch, hidden))."""
    if isinstance(a, tuple):
        return tuple(torch.where(mask[None, :, None], x, y) for x, y in zip(a, b))
    return torch.where(mask[None, :, None], a, b)


def atomic_torch_save(obj: object, path: Union[str, Path]) -> None:
    """Write to a temp file in the same folder, then rename: a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
