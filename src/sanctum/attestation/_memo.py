"""Small bounded memos of *pure* parse and decode steps, keyed by the exact input bytes.

A cold verification parses the same immutable inputs again and again: the PEM issuer chains,
the CRLs, the TCB info and QE identity JSON, the PCK certificate's SGX extension and the quote's
attestation key. Each of these steps is a pure function of its exact input bytes (plus, where
noted, a flag that is part of the key) that returns an immutable object (certificates, CRLs,
frozen dataclasses). :func:`memo` remembers the last few results of such a function with
``functools.lru_cache``, which is bounded and safe under threads. :class:`ObjectMemo` does the
same for pure conversions of an immutable object (a certificate's DER, names or public point),
keyed by the object's identity because hashing a certificate costs more than the conversion.

What is never memoised here: signature verifications, chain, name and revocation *checks*,
time, policy, or any other decision. Every check of a verification still runs on every call;
only the *decoding* of bytes (and objects) already seen is shared. A failure is never
remembered (``lru_cache`` does not store exceptions), so a malformed input raises the same error
on every call. See ``docs/adr/0022-parse-memos.md``.

:func:`clear_memos` empties every memo (the benchmark uses it to measure a truly cold call).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Final, Generic, ParamSpec, TypeVar, cast

__all__ = ["MEMO_SIZE", "ObjectMemo", "clear_memos", "memo"]

#: Entries per memo: enough for the collateral of many platform families, small in memory.
MEMO_SIZE: Final = 128

_P = ParamSpec("_P")
_T = TypeVar("_T")
_K = TypeVar("_K")

_CLEARERS: list[Callable[[], None]] = []


def memo(func: Callable[_P, _T]) -> Callable[_P, _T]:
    """Return ``func`` memoised on its (hashable, immutable) arguments, bounded.

    Only use it on pure functions of immutable arguments that return immutable objects.
    """
    cached = functools.lru_cache(maxsize=MEMO_SIZE)(func)
    _CLEARERS.append(cached.cache_clear)
    return cast("Callable[_P, _T]", cached)


class ObjectMemo(Generic[_K, _T]):
    """A bounded memo of a pure function of one immutable *object*, keyed by its identity.

    For objects whose hash is costly (cryptography certificates hash their whole structure), the
    key is ``id(obj)`` and the entry keeps ``obj`` alive, so an id cannot be reused by another
    object while its entry exists; a lookup also checks the stored object *is* ``obj``. The
    objects memoised here come from the byte-keyed memos above, so the same certificate object
    is seen again and again. Failures are not remembered. Safe under threads.
    """

    def __init__(self, func: Callable[[_K], _T], maxsize: int = 4 * MEMO_SIZE) -> None:
        """Memoise ``func`` for at most ``maxsize`` objects."""
        self._func = func
        self._maxsize = maxsize
        self._entries: dict[int, tuple[_K, _T]] = {}
        self._lock = threading.Lock()
        _CLEARERS.append(self.clear)

    def __call__(self, obj: _K) -> _T:
        """Return ``func(obj)``, computed once per live object.

        Raises:
            Exception: Whatever ``func`` raises (never remembered).
        """
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        value = self._func(obj)
        with self._lock:
            if len(self._entries) >= self._maxsize:
                del self._entries[next(iter(self._entries))]
            self._entries[id(obj)] = (obj, value)
        return value

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()


def clear_memos() -> None:
    """Forget every memoised result (for truly cold measurements and tests)."""
    for clear in _CLEARERS:
        clear()
