"""Validation of job settings (the E1 body and the E3 ``config`` part, spec §3)."""

from __future__ import annotations

from typing import Any

ENUMS: dict[str, tuple[str, ...]] = {
    "version": ("V1", "V2"),
    "action": ("Create", "Delete"),
    "attributeWriteType": ("Append", "Replace", "Singleton", "Static"),
    "tagWriteType": ("Append", "Replace"),
    "securityLabelWriteType": ("Append", "Replace"),
    "fileMergeMode": ("Distribute", "Merge"),
    "hashCollisionMode": ("FavorExisting", "FavorIncoming", "IgnoreExisting", "IgnoreIncoming", "Split"),
}
BOOLEANS = ("haltOnError", "playbookTriggersEnabled")
REQUIRED = ("owner", "action", "haltOnError", "attributeWriteType")
DEFAULTS: dict[str, Any] = {
    "version": "V1",
    "tagWriteType": "Replace",
    "securityLabelWriteType": "Replace",
    "fileMergeMode": "Merge",
    "hashCollisionMode": "FavorIncoming",
    "playbookTriggersEnabled": False,
}


class SettingsError(ValueError):
    """A job settings object the server refuses with 400."""


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise SettingsError(f"Invalid value for {name}: {value!r} (expected true or false)")


def parse_settings(raw: Any) -> dict[str, Any]:
    """Validate a settings object and return it normalised, with defaults filled in.

    Enum values are exact (the docs warn that names and values must match exactly); booleans
    may be JSON booleans or the strings ``"true"``/``"false"``; unknown keys are ignored.
    """
    if not isinstance(raw, dict):
        raise SettingsError("Batch settings must be a JSON object")
    for name in REQUIRED:
        if raw.get(name) is None or raw.get(name) == "":
            raise SettingsError(f"Missing required setting: {name}")
    if not isinstance(raw["owner"], str):
        raise SettingsError("Invalid value for owner: expected a string")
    settings: dict[str, Any] = dict(DEFAULTS)
    settings["owner"] = raw["owner"]
    for name, allowed in ENUMS.items():
        if raw.get(name) is not None:
            if raw[name] not in allowed:
                raise SettingsError(
                    f"Invalid value for {name}: {raw[name]!r} (expected one of {', '.join(allowed)})"
                )
            settings[name] = raw[name]
    for name in BOOLEANS:
        if raw.get(name) is not None:
            settings[name] = _bool(name, raw[name])
    return settings
