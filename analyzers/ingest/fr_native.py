"""Flight-recorder dumps decoded by the compiled ``_fr_columns`` module, as Arrow arrays.

The compiled decoder reads the pickle's opcodes (or the JSON text) itself and writes the entries'
fields into Arrow-layout buffers: no Python object per entry, several times cheaper than
unpickling (or orjson) and converting. It accepts only plain data of the types the Python path
converts directly; for anything else (including every damaged, refused or older-format dump) it
declines and the flight-recorder parser reads the file the Python way (restricted unpickler,
orjson), which also reports what is wrong. So both paths give identical tables; tests compare
them on every fixture dump and on generated and mutated ones.

Without a C compiler at install time the module is simply absent and every dump takes the
Python path (``AVAILABLE`` says which).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

try:
    from . import _fr_columns  # type: ignore[attr-defined]
except ImportError:  # built without a compiler: the Python path reads every dump
    _fr_columns = None

AVAILABLE = _fr_columns is not None


@dataclass
class NativeEntries:
    """One dump's entries as the compiled decoder returns them, wrapped as Arrow arrays."""

    count: int
    direct: pa.StructArray  # the plain fields, shaped like flight_recorder._DIRECT_FIELDS
    numel: dict[str, pa.Array]  # input_numel, output_numel (flight_recorder.numel_series)
    pg_names: pa.Array
    pg_descs: pa.Array
    stack_codes: pa.Array  # int32: each entry's code into ``stacks``
    stacks: list[Any]  # each distinct frames value (a list of frame dicts, or None), once


def decode(data: bytes, is_json: bool, fields: pa.StructType) -> tuple[dict[str, Any], NativeEntries] | None:
    """(top-level dict without ``entries``, entries), or None when the Python path must read it."""
    if _fr_columns is None:
        return None
    decoded = _fr_columns.decode_json(data) if is_json else _fr_columns.decode_pickle(data)
    if decoded is None:
        return None
    top, count, buffers, (names, descs), (codes, stacks) = decoded
    arrays = [_array(field.type, count, buffers[field.name]) for field in fields]
    numel = {}
    for shapes in ("input_sizes", "output_sizes"):
        bits, nulls = _validity(buffers[shapes][0])
        numel[shapes.replace("sizes", "numel")] = pa.Array.from_buffers(
            pa.int64(), count, [bits, pa.py_buffer(buffers[shapes][4])], null_count=nulls
        )
    return top, NativeEntries(
        count=count,
        direct=pa.StructArray.from_arrays(arrays, fields=list(fields)),
        numel=numel,
        pg_names=_strings(count, *names),
        pg_descs=_strings(count, *descs),
        stack_codes=pa.Array.from_buffers(pa.int32(), count, [None, pa.py_buffer(codes)]),
        stacks=stacks,
    )


def _validity(pair: tuple[bytes | None, int]) -> tuple[pa.Buffer | None, int]:
    bits, nulls = pair
    return (pa.py_buffer(bits) if bits is not None else None), nulls


def _strings(count: int, validity: tuple[bytes | None, int], offsets: bytes, data: bytes) -> pa.Array:
    bits, nulls = _validity(validity)
    return pa.Array.from_buffers(
        pa.string(), count, [bits, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls
    )


def _array(dtype: pa.DataType, count: int, buffers: tuple[Any, ...]) -> pa.Array:
    bits, nulls = _validity(buffers[0])
    if pa.types.is_string(dtype):
        return _strings(count, *buffers)
    if not pa.types.is_list(dtype):  # int64, float64, bool
        return pa.Array.from_buffers(dtype, count, [bits, pa.py_buffer(buffers[1])], null_count=nulls)
    list_offsets, inner_offsets, values = buffers[1], buffers[2], buffers[3]
    inner_count = len(inner_offsets) // 4 - 1
    item = dtype.value_type
    if pa.types.is_string(item):
        child = pa.Array.from_buffers(
            item, inner_count, [None, pa.py_buffer(inner_offsets), pa.py_buffer(values)]
        )
    else:  # a shape: list<int64>
        leaves = pa.Array.from_buffers(item.value_type, len(values) // 8, [None, pa.py_buffer(values)])
        child = pa.Array.from_buffers(
            item, inner_count, [None, pa.py_buffer(inner_offsets)], children=[leaves]
        )
    return pa.Array.from_buffers(
        dtype, count, [bits, pa.py_buffer(list_offsets)], null_count=nulls, children=[child]
    )
