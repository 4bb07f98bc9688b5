"""In-process progress listeners, so the CLI can draw a bar while the flow fans out."""

from __future__ import annotations

from collections.abc import Callable

Listener = Callable[[float], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def report(percent: float) -> None:
    """Tell every listener how far the current request is (0-100)."""
    for listener in list(_listeners):
        listener(percent)
