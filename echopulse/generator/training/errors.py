"""The error a training run refuses with (bad data folder, bad arguments, a resume that does not fit)."""

from __future__ import annotations

from echopulse.errors import EchopulseError


class TrainingError(EchopulseError):
    """Training cannot start or continue; the message names the folder or option and the problem."""
