"""asr: streaming speech recognition with a log-mel -> unidirectional GRU -> CTC model."""

from .audio import AudioError, load_audio
from .model import AcousticModel, ModelConfig
from .streaming import StreamingRecognizer
from .transcribe import Transcript, transcribe

__all__ = ["AcousticModel", "AudioError", "ModelConfig", "StreamingRecognizer", "Transcript", "load_audio",
           "transcribe"]
__version__ = "0.1.0"
