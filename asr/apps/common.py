"""What every command shares: one-line errors and loading the model a command was given."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Union

from ..model import AcousticModel, load_model


def error(message: str) -> None:
    print(f"asr: error: {message}", file=sys.stderr, flush=True)


def command_model(path: Union[str, Path, None], int8: bool = False) -> AcousticModel:
    """asr.model.load_model (default: the bundled model), a bad or missing file ending the command with
    its one-line message."""
    try:
        return load_model(path, int8)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"asr: error: {e}") from None
