"""A thread-safe, bounded cache of *verified* collateral, keyed by content hash.

Verifying collateral (TCB signing chains, TCB info and QE identity signatures, CRL signatures,
the PCK CA and root) costs most of a DCAP verification, yet a fleet of platforms shares a handful
of collateral sets. :class:`CollateralCache` keeps the verified, parsed objects keyed by the
SHA-256 of the exact bytes they were derived from (and the trust anchor), so a cache hit is only
ever the same input verified under the same root.

What is cached is the outcome of *time-independent* checks (structure, names, signatures). Each
entry also carries the earliest expiry of what it covers; the entry is dropped once the
verification time passes it, and the verifier still judges every validity window, revocation and
TCB decision on each call, so caching never changes a result.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

__all__ = ["CacheStats", "CollateralCache"]

_DEFAULT_MAX_ENTRIES: Final = 4096


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of a :class:`CollateralCache`.

    Attributes:
        hits: Lookups that found a live entry.
        misses: Lookups that found nothing (or an expired entry).
        entries: Entries currently held.
        evictions: Entries dropped because the cache was full.
    """

    hits: int
    misses: int
    entries: int
    evictions: int


class CollateralCache:
    """An LRU map from content-hash keys to verified collateral, safe to share across threads.

    Values are immutable verified objects; the lock guards only the map itself, so two threads
    that miss at once may both verify and store the same (equal) value, which is harmless.
    """

    def __init__(self, max_entries: int = _DEFAULT_MAX_ENTRIES) -> None:
        """Create an empty cache holding at most ``max_entries`` entries.

        Raises:
            ValueError: ``max_entries`` is not positive.
        """
        if max_entries < 1:
            msg = "max_entries must be positive"
            raise ValueError(msg)
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[datetime, object]] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    def get(self, key: Hashable, now: datetime) -> object | None:
        """Return the value stored under ``key`` if it has not expired at ``now``, else ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            expires, value = entry
            if now > expires:
                del self._entries[key]
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, value: object, expires: datetime) -> None:
        """Store ``value`` under ``key`` until ``expires`` (evicting the least recently used)."""
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
                self._evictions += 1

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def stats(self) -> CacheStats:
        """Return the current counters."""
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries), self._evictions)

    def __len__(self) -> int:
        """Return the number of entries held."""
        with self._lock:
            return len(self._entries)
