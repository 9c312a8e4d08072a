"""Int8 dynamic quantization and export of the streaming step (`asr export`).

The exported unit is one streaming step: normalized-log-mel chunk + GRU state in, logits + new
state out. The log-mel front end stays outside (it is a fixed STFT + mel matrix any runtime has),
so a host application carries exactly what `StreamingRecognizer` carries: leftover samples,
leftover frames (< stack) and the state tensor. A model with look-ahead k returns k steps fewer
than it is given: the host keeps their frames for the next call, and at the end of an utterance
appends k * stack frames equal to the normalizer's mean (normalized: zeros, the batch pass's
padding) to get them out.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Union

import torch
from torch import nn

from ..model import AcousticModel, is_quantized, with_lookahead


class StreamingStep(nn.Module):
    """step(features (1, T, n_mels) raw log-mel, T a multiple of stack; state (layers, 1, hidden))
    -> (logits (1, T // stack - lookahead, V), new_state). Normalization is included.

    Same arithmetic as `AcousticModel.forward` for one stream with a given state, but with no
    Python branching on shapes, so it scripts/exports with a dynamic T.
    """

    def __init__(self, model: AcousticModel):
        super().__init__()
        if model.config.rnn != "gru":
            raise ValueError("export supports GRU models (the state is one tensor); this model is "
                             f"{model.config.rnn}")
        self.stack = model.config.stack
        self.n_mels = model.config.n_mels
        self.lookahead = model.config.lookahead
        self.normalizer = model.normalizer
        self.input = model.input
        self.rnn = model.rnn
        self.head = model.head

    def forward(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = features.shape[0]
        steps = features.shape[1] // self.stack
        x = self.normalizer(features[:, : steps * self.stack]).reshape(b, steps, self.stack * self.n_mels)
        x = with_lookahead(x, self.lookahead, steps - self.lookahead)
        out, new_state = self.rnn(self.input(x), state)
        return self.head(out), new_state


def initial_state(model: AcousticModel) -> torch.Tensor:
    return torch.zeros(model.config.layers, 1, model.config.hidden)


def export_step(model: AcousticModel, output: Union[str, Path]) -> Path:
    """Writes the streaming step as ONNX (`.onnx`) or TorchScript (`.pt`/`.ts`); returns the path."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    step = StreamingStep(model.eval()).eval()
    example = (torch.zeros(1, (4 + model.config.lookahead) * model.config.stack, model.config.n_mels),
               initial_state(model))
    if output.suffix == ".onnx":
        if is_quantized(model):
            raise ValueError("int8 export is TorchScript only (.pt); ONNX gets the fp32 model")
        # The TorchScript-based exporter handles nn.GRU with an explicit state input; dynamic T only.
        # (It warns about GRU batch sizes; ours is fixed at 1 and the state is an input, as it asks.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(step, example, str(output), input_names=["features", "state"],
                              output_names=["logits", "new_state"],
                              dynamic_axes={"features": {1: "frames"}, "logits": {1: "steps"}},
                              opset_version=17, dynamo=False)
    else:
        with warnings.catch_warnings():  # torch.jit is deprecated upstream but still the no-extra-deps format
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.script(step).save(str(output))
    return output


class ExportedStep:
    """Runs an exported step file with the same call signature as `StreamingStep` (for tests and tools)."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        if self.path.suffix == ".onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            self._module = None
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self._module = torch.jit.load(str(self.path))

    def __call__(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._module is not None:
            with torch.inference_mode():
                return self._module(features, state)
        logits, new_state = self._session.run(None, {"features": features.numpy(), "state": state.numpy()})
        return torch.from_numpy(logits), torch.from_numpy(new_state)
