"""A restricted unpickler for flight-recorder dumps: plain data only, never code.

Torch writes flight-recorder pickles with its IValue pickler: protocol 2, nothing but dicts,
lists, tuples, str, int, float, bool and None. Every way a pickle can reach a callable goes
through ``find_class`` (``GLOBAL``, ``STACK_GLOBAL``, ``INST``, ``OBJ`` and the ``EXT`` registry
lookups) or ``persistent_load`` (``PERSID``/``BINPERSID``); both are refused here, so ``REDUCE``,
``BUILD`` and ``NEWOBJ`` can only ever see plain data objects, which are not callable and have no
``__setstate__``, and fail. The size of the input is bounded before anything is decoded.

Callers still check the *types* of what they read (a protocol-4 pickle can hold a ``set``);
:func:`is_plain` does that for a whole object when a caller wants it.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

# Real dumps are a few hundred KB (2000 entries); 1 GiB leaves room for huge buffers and
# still refuses a file that could only be an attack or garbage.
MAX_PICKLE_BYTES = 1 << 30

PLAIN_TYPES = (dict, list, tuple, str, int, float, bool, type(None), bytes)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global, a class or a persistent object: refused, nothing ran."""


class PlainUnpickler(pickle.Unpickler):
    """The C unpickler with every route to a callable closed."""

    def find_class(self, module: str, name: str) -> Any:
        """Refuse every global reference (GLOBAL, STACK_GLOBAL, INST, OBJ, EXT*)."""
        raise UnsafePickleError(f"refused global {module[:80]}.{name[:80]} (only plain data is accepted)")

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (PERSID, BINPERSID)."""
        raise UnsafePickleError("refused persistent id (only plain data is accepted)")


class _PlainPyUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with the same refusals; its stacks stay readable after an error."""

    def find_class(self, module: str, name: str) -> Any:
        """Refuse every global reference, as :class:`PlainUnpickler` does."""
        raise UnsafePickleError(f"refused global {module[:80]}.{name[:80]} (only plain data is accepted)")

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids, as :class:`PlainUnpickler` does."""
        raise UnsafePickleError("refused persistent id (only plain data is accepted)")


def partial_stacks(data: bytes, max_bytes: int = MAX_PICKLE_BYTES) -> tuple[list[list[Any]], int, str] | None:
    """What a damaged pickle built before the damage: its open stack frames, outermost first.

    Runs the pure-Python restricted unpickler (slower, used only once the C one has failed) and
    returns (frames, byte position of the failure, error text), where each frame is the list of
    objects pushed since the matching MARK (the outermost frame holds the top object). Objects
    still under construction are in their frames, empty or partly filled. None when the pickle
    decodes completely or is too large. :class:`UnsafePickleError` still propagates.
    """
    if len(data) > max_bytes:
        return None
    stream = io.BytesIO(data)
    unpickler = _PlainPyUnpickler(stream)
    try:
        unpickler.load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # the damage: read what was built before it
        frames = [*getattr(unpickler, "metastack", []), getattr(unpickler, "stack", [])]
        return [list(f) for f in frames if isinstance(f, list)], stream.tell(), f"{type(exc).__name__}: {exc}"
    return None


def loads(data: bytes, max_bytes: int = MAX_PICKLE_BYTES) -> Any:
    """Decode ``data`` as plain data.

    Raises :class:`UnsafePickleError` for any global/class/persistent reference,
    ``pickle.UnpicklingError`` (or ``ValueError``/``EOFError``…) for damaged input, and
    ``ValueError`` when the input is larger than ``max_bytes``.
    """
    if len(data) > max_bytes:
        raise ValueError(f"pickle of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    # A buffered reader sized to the data lets the C unpickler prefetch (peek) the whole input
    # instead of calling read() per opcode: 2-3x faster than a bare BytesIO.
    stream = io.BufferedReader(io.BytesIO(data), buffer_size=max(len(data), 8192))
    return PlainUnpickler(stream).load()


def is_plain(obj: Any, max_nodes: int = 50_000_000) -> bool:
    """True when ``obj`` consists only of dict/list/tuple/str/int/float/bool/None/bytes.

    Walks iteratively (no recursion limit) and visits each shared object once.
    """
    seen: set[int] = set()
    stack = [obj]
    visited = 0
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind not in PLAIN_TYPES:
            return False
        if kind is dict or kind is list or kind is tuple:
            if id(item) in seen:
                continue
            seen.add(id(item))
            visited += 1
            if visited > max_nodes:
                return False
            if kind is dict:
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)
    return True
