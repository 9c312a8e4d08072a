"""asr: streaming speech recognition with a log-mel -> unidirectional GRU -> CTC model."""

from .audio import AudioError, load_audio
from .lm import default_lm
from .model import AcousticModel, ModelConfig, load_model
from .streaming import LiveTranscriber, StreamingRecognizer
from .transcribe import Transcript, make_decoder, transcribe

__all__ = ["AcousticModel", "AudioError", "LiveTranscriber", "ModelConfig", "StreamingRecognizer", "Transcript",
           "default_lm", "load_audio", "load_model", "make_decoder", "transcribe"]
__version__ = "0.1.0"
