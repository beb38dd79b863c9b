"""One policy for every config dataclass read from a checkpoint's files: a key this version does
not know is an error naming it, never silently dropped (a setting that is ignored changes what a
model computes without a word). Keys a format is documented to carry for parts we do not build
are passed as `ignore`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def config_from_dict(cls: type[T], d: Any, *, where: str, ignore: tuple[str, ...] = ()) -> T:
    """`cls(**d)` after checking `d` is a mapping of known keys. Raises ValueError naming
    `where` (the caller turns it into its own error type, with the file)."""
    if not isinstance(d, Mapping):
        raise ValueError(f"{where} must be an object, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known - set(ignore))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(sorted(known))})")
    try:
        return cls(**{k: v for k, v in d.items() if k in known})
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None
