"""echopulse: wearable ECG in, synthetic echocardiogram clips out, one per heartbeat."""

from echopulse.errors import EchopulseError, IngestError

__all__ = ["EchopulseError", "IngestError"]
__version__ = "0.1.0"
