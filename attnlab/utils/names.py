"""Looking a name up in a registry, with the error every registry gives for an unknown one."""
from __future__ import annotations

import difflib
from typing import Mapping, TypeVar

__all__ = ["lookup"]

V = TypeVar("V")


def lookup(table: Mapping[str, V], name: object, kind: str) -> V:
    """``table[name]``, or a KeyError ``"<kind> name: expected one of [...], received 'x' (did you mean ...?)"``.

    Used by the mixer, model and task registries (``kind`` is ``"mixer"``, ``"model"``, ``"task"``).
    """
    if name in table:
        return table[name]
    close = difflib.get_close_matches(str(name), list(table), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise KeyError(f"{kind} name: expected one of {sorted(table)}, received {name!r}{hint}")
