"""A ChatAdapter that formats each signature's system message and few-shot demos once.

DSPy rebuilds the system message (field descriptions, JSON schemas of typed fields such as ``list[str]``) on
every call; for the query processor that was ~8 % of the server's CPU per request. A signature's system message
only depends on the signature class (instructions are part of the class: ``with_instructions`` makes a new one),
so it is cached per class, in a bounded LRU. The few-shot demos are formatted on every call too (each value
serialised to JSON); they are cached per signature and per demo objects. Demos are treated as values: an
optimizer or a loaded program brings new ones, and a demo changed in place would keep its old formatting.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import dspy

MAX_CACHED_SIGNATURES = 128


class CachedChatAdapter(dspy.ChatAdapter):
    """Not for streamed calls: DSPy's StreamListener recognises adapters by class name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._system: OrderedDict[tuple[Any, str], str] = OrderedDict()
        self._demos: OrderedDict[tuple[Any, ...], tuple[list[Any], list[dict[str, Any]]]] = OrderedDict()
        self._lock = threading.Lock()

    def format_system_message(self, signature: Any) -> str:
        key = (signature, str(signature.instructions))
        with self._lock:
            cached = self._system.get(key)
            if cached is not None:
                self._system.move_to_end(key)
                return cached
        message: str = super().format_system_message(signature)
        with self._lock:
            self._system[key] = message
            while len(self._system) > MAX_CACHED_SIGNATURES:
                self._system.popitem(last=False)
        return message

    def format_demos(self, signature: Any, demos: list[Any]) -> list[dict[str, Any]]:
        if not demos:
            return []
        # Keyed by the demo objects' ids: the entry holds the objects, so no other object can take their ids.
        key = (signature, str(signature.instructions), *map(id, demos))
        with self._lock:
            hit = self._demos.get(key)
            if hit is not None:
                self._demos.move_to_end(key)
                return [dict(message) for message in hit[1]]
        messages: list[dict[str, Any]] = super().format_demos(signature, demos)
        with self._lock:
            self._demos[key] = (list(demos), [dict(message) for message in messages])
            while len(self._demos) > MAX_CACHED_SIGNATURES:
                self._demos.popitem(last=False)
        return messages


ADAPTER = CachedChatAdapter()
