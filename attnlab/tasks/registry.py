"""Registry of tasks: ``create(name, **kw)`` and ``available()``."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from attnlab.tasks.base import Task
from attnlab.utils.names import lookup, unknown_hint

__all__ = ["register", "create", "available"]

_TASKS: dict[str, type[Task]] = {}


def register(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator adding a :class:`Task` subclass under ``name``."""

    def deco(cls: type[Task]) -> type[Task]:
        if name in _TASKS:
            raise ValueError(f"register: task name {name!r} is already registered")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return deco


def create(name: str, **kwargs: Any) -> Task:
    """Build the task registered as ``name``; unknown names/kwargs raise clear errors."""
    cls = lookup(_TASKS, name, "task")
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise TypeError(f"task {name!r} kwargs: expected some of {allowed}, received unknown {unknown}"
                        f"{unknown_hint(unknown, allowed)}")
    return cls(**kwargs)


def available() -> dict[str, type[Task]]:
    """Registered task classes by name."""
    return dict(sorted(_TASKS.items()))
