"""For code written against the incumbent framework's batch guide.

``from streambatch import tcex`` in place of the framework's ``tcex`` object: ``tcex.batch(owner)``
returns a :class:`streambatch.Batch` (with a new job file under ``./.streambatch/``) and
``tcex.exit(code, message)`` ends the program, so the guide's examples run unchanged.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from .batch import Batch

__all__ = ["batch", "exit"]


def batch(owner: str, action: str = "Create", attribute_write_type: str = "Replace", halt_on_error: bool = False,
          playbook_triggers_enabled: bool = False, tag_write_type: str = "Replace",
          security_label_write_type: str = "Replace", path: Any = None, **kwargs: Any) -> Batch:
    """A new batch for ``owner``, with the framework factory's defaults."""
    return Batch(owner, path, action=action, attribute_write_type=attribute_write_type,
                 halt_on_error=halt_on_error, playbook_triggers_enabled=playbook_triggers_enabled,
                 tag_write_type=tag_write_type, security_label_write_type=security_label_write_type, **kwargs)


def exit(code: int = 0, msg: str | None = None) -> NoReturn:  # noqa: A001 - the framework's name
    """Print ``msg`` (to stderr when ``code`` is not 0) and exit with ``code``."""
    if msg:
        print(msg, file=sys.stderr if code else sys.stdout)
    sys.exit(code)
