"""streambatch: a disk-backed streaming batch builder for ThreatConnect Batch API v2 feeds."""

from .batch import Batch, JobSettings
from .errors import ChunkError, JobFileError, StreambatchError, TransientError, ValidationError
from .model import Attribute, FileOccurrence, Group, Indicator, Record, SecurityLabel
from .xid import generate_xid

__all__ = [
    "Attribute", "Batch", "ChunkError", "FileOccurrence", "Group", "Indicator", "JobFileError", "JobSettings",
    "Record", "SecurityLabel", "StreambatchError", "TransientError", "ValidationError", "generate_xid",
]
__version__ = "0.1.0"
