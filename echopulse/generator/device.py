"""Where a model runs: the one resolver every command and service uses for a `--device` value."""

from __future__ import annotations

import torch

from echopulse.errors import ModelError, one_line


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """`auto` (or None): CUDA when present, else the CPU; `cpu`, `cuda`, `cuda:N` as named.

    Refuses, with `ModelError`, a name torch does not know and CUDA on a machine without it, so a bad
    `--device` is one line before any work rather than a failure inside the first model call.
    """
    if isinstance(name, torch.device):
        device = name
    elif name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(str(name))
        except RuntimeError as error:
            raise ModelError(f"--device {name!r} is not a device ({one_line(error)})") from None
    if device.type not in ("cpu", "cuda"):
        raise ModelError(f"--device must be auto, cpu, cuda or cuda:N, got {str(name)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"--device {device}: no CUDA device is available here")
    return device
