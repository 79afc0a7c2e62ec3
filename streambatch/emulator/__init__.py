"""A faithful local emulator of the ThreatConnect Batch API v2.

``from streambatch.emulator import Emulator`` and ``with Emulator() as tc: ...``; see
:class:`Emulator` for the knobs, :mod:`.faults` for fault injection, :mod:`.store` for the
data it keeps, and ``DECISIONS.md`` for how it fills the gaps the spec leaves open.
"""

from .auth import signature
from .emulator import Emulator
from .faults import Fault
from .store import Store

__all__ = ["Emulator", "Fault", "Store", "signature"]
