"""Looking a name up in a registry, with the error every registry gives for an unknown one."""
from __future__ import annotations

import difflib
from typing import Iterable, Mapping, TypeVar

__all__ = ["lookup", "close_matches", "unknown_hint"]

V = TypeVar("V")


def close_matches(name: object, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` known names close to ``name``: spelling neighbours first (difflib), then names that start
    with or contain it (so an abbreviation such as ``assoc`` finds ``associative_recall``)."""
    known = list(known)
    text = str(name).strip().lower()
    found = difflib.get_close_matches(text, known, n=n)
    if len(text) >= 2:
        found += sorted(k for k in known if k.lower().startswith(text))
        found += sorted(k for k in known if text in k.lower())
    return list(dict.fromkeys(found))[:n]


def unknown_hint(unknown: Iterable[str], known: Iterable[str]) -> str:
    """`` (did you mean window for windw?)`` for the unknown keyword names that have a close known one, else ""."""
    known = list(known)
    pairs = [f"{close[0]} for {u}" for u in unknown if (close := close_matches(u, known, n=1))]
    return f" (did you mean {', '.join(pairs)}?)" if pairs else ""


def lookup(table: Mapping[str, V], name: object, kind: str, arg: str | None = None) -> V:
    """``table[name]``, or a KeyError ``"<arg>: expected one of [...], received 'x' (did you mean ...?)"``.

    ``arg`` defaults to ``"<kind> name"``. Used by the mixer, model and task registries (``kind`` is
    ``"mixer"``, ``"model"``, ``"task"``) and by the suites, benchmark cases and reproductions.
    """
    if name in table:
        return table[name]
    close = close_matches(name, table)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise KeyError(f"{arg or kind + ' name'}: expected one of {sorted(table)}, received {name!r}{hint}")
