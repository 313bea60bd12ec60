"""echopulse: wearable ECG in, synthetic echocardiogram clips out, one per heartbeat."""

from echopulse.errors import EchopulseError, IngestError
from echopulse.version import __version__

__all__ = ["EchopulseError", "IngestError", "__version__"]
