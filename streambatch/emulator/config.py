"""The emulated instance's configuration: owners, permissions and behaviour knobs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import rules
from .auth import Credentials

ACCESS = frozenset({"read", "create", "delete"})
DEFAULT_OWNERS = ("Demo Organization", {"name": "Common Community", "type": "Community"})


@dataclass(frozen=True)
class Owner:
    """An Organization, Community or Source, and what the API user may do in it.

    ``access`` is a subset of ``{"read", "create", "delete"}``; an owner without ``read`` is
    unreachable for the user (403) and is not listed by E9.
    """

    name: str
    type: str = "Organization"
    id: int = 0
    access: frozenset[str] = ACCESS

    @classmethod
    def of(cls, spec: "str | dict[str, Any] | Owner", index: int) -> "Owner":
        if isinstance(spec, Owner):
            return spec
        if isinstance(spec, str):
            return cls(name=spec, id=index + 1)
        access = frozenset(spec.get("access", ACCESS))
        if access - ACCESS:
            raise ValueError(f"unknown access flags {sorted(access - ACCESS)}")
        return cls(name=spec["name"], type=spec.get("type", "Organization"), id=spec.get("id", index + 1), access=access)


@dataclass
class Config:
    """Everything an emulated instance needs to know (see :class:`~streambatch.emulator.Emulator`)."""

    credentials: Credentials
    owners: list[Owner]
    default_owner: str
    auth: bool = True
    time_window: int = 300
    clock: Callable[[], float] = time.time
    batch_enabled: bool = True
    synchronous_batch_save_limit: int = 100
    sync_includes_id: bool = False
    create_and_upload_delete: bool = True
    rate: float | None = None
    max_upload_bytes: int = 100_000_000
    indicator_limit: int = 25_000
    bare_running: bool = True
    custom_indicator_types: list[str | dict[str, Any]] = field(default_factory=list)
    attribute_types: tuple[str | dict[str, Any], ...] = rules.DEFAULT_ATTRIBUTE_TYPES
    exclusion_lists: list[dict[str, Any]] = field(default_factory=list)
    v3: bool = True
    require_label_details: bool = True
    strict_order: bool = True

    def owner(self, name: str | None) -> Owner | None:
        for owner in self.owners:
            if owner.name == name:
                return owner
        return None


def build_owners(specs: Iterable[str | dict[str, Any] | Owner]) -> list[Owner]:
    owners = [Owner.of(spec, i) for i, spec in enumerate(specs)]
    if len({o.name for o in owners}) != len(owners):
        raise ValueError("owner names must be unique")
    return owners
