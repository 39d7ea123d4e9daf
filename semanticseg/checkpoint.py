"""Training checkpoints read as data only: a checkpoint planted in an output folder must not run code.

Checkpoints hold tensors and plain values (dicts, lists, tuples, numbers, strings, None), which
`torch.load(weights_only=True)` reads without unpickling arbitrary objects; anything else is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from semanticseg.errors import UserError


class CheckpointRefused(UserError):
    """A checkpoint file that holds more than tensors and plain values (e.g. a pickle that would run code)."""


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a training checkpoint with `weights_only=True`; CheckpointRefused (one line) for anything else."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a paragraph; the line naming the refused object is the useful part.
        lines = [line.strip() for line in str(err).splitlines()]
        reason = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), "not plain data")
        raise CheckpointRefused(
            f"{path}: refused: a checkpoint may hold only tensors and plain values ({reason}); "
            "delete it to start the run over"
        ) from None
