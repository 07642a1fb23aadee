"""Read TensorFlow checkpoints (the "tensor bundle" format) into numpy, without TensorFlow.

A checkpoint with prefix ``P`` is two or more files:

* ``P.index``: a LevelDB-style sorted table ("SSTable"). Each key is a variable
  name; each value is a serialized ``BundleEntryProto`` saying where the
  variable's bytes lie (dtype, shape, shard, offset, size, masked CRC32C). The
  entry under the empty key is a ``BundleHeaderProto`` (shard count,
  endianness).
* ``P.data-00000-of-0000N``: the raw little-endian tensor bytes, concatenated.

Only what TensorFlow itself writes for plain variables is supported: an
uncompressed table, little-endian data, numeric dtypes, unpartitioned
variables. Anything else raises `CheckpointError` with a message that says
what was found, as does any corrupt or truncated file (bad magic number, a
block or varint running past its end, a block checksum that does not match).

Table layout, as parsed here (all integers little-endian):

* footer (last 48 bytes): metaindex BlockHandle, index BlockHandle (each two
  varint64s: offset, size), zero padding to 40 bytes, then the 8-byte magic
  number ``0xdb4775248b80fb57``.
* block: ``size`` bytes of entries and restart array, then a 5-byte trailer
  (1 byte compression type, 4 bytes masked CRC32C over the block and type byte).
* entry: varint32 shared-prefix length, varint32 unshared length, varint32
  value length, the unshared key bytes, the value bytes. Keys are prefix
  compressed against the previous key; every restart point stores a full key.
* restart array: ``num_restarts`` fixed32 offsets, then ``num_restarts`` itself.
* the index block maps a separator key (>= every key in the block) to the
  BlockHandle of each data block.

This module was written from that format description; it shares no code with
TensorFlow or LevelDB.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetag.runtime.integrity import IntegrityError, read_varint

__all__ = [
    "CheckpointError",
    "TensorEntry",
    "TFCheckpoint",
    "crc32c",
    "read_checkpoint",
]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two max-size BlockHandles (2 * 20 bytes) + 8-byte magic
BLOCK_TRAILER_SIZE = 5
_CRC_MASK_DELTA = 0xA282EAD8

# TensorFlow's DataType enum (types.proto) -> numpy dtype, little-endian.
# bfloat16 and the quantized types have no plain numpy equivalent: they are
# reported as unsupported rather than silently reinterpreted.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    8: np.dtype("<c8"),  # DT_COMPLEX64
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    18: np.dtype("<c16"),  # DT_COMPLEX128
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
_DTYPE_NAMES = {7: "string", 14: "bfloat16", 20: "resource", 21: "variant"}


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated or uses an unsupported feature."""


# --------------------------------------------------------------------------- CRC32C

def _make_crc32c_table() -> list[int]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``crc``.

    Pure Python (about 10 MB/s), so the checkpoint reader only runs it over
    tensor data when asked to (``verify=True``); the small table blocks are
    always checked.
    """
    table = _CRC32C_TABLE
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _unmask_crc(masked: int) -> int:
    """Undo LevelDB/TF's CRC masking (rotate right by 15 after subtracting a constant)."""
    rot = (masked - _CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --------------------------------------------------------------------------- varints

def _varint(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos`` (`edgetag.runtime.integrity.read_varint`); returns (value, next position)."""
    try:
        return read_varint(buf, pos, end)
    except IntegrityError as exc:
        raise CheckpointError(f"{exc} in {what}") from None


# --------------------------------------------------------------------------- protobuf

def _proto_fields(buf: bytes, what: str) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) from a serialized protobuf message.

    Varints come back as int, fixed32/fixed64 as int, length-delimited fields as
    bytes. Groups (wire types 3/4) are obsolete and never used by the bundle
    protos, so they are an error.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos, end, what)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise CheckpointError(f"invalid protobuf field number 0 in {what}")
        if wire == 0:
            value, pos = _varint(buf, pos, end, what)
            yield field, wire, value
        elif wire == 1:
            if pos + 8 > end:
                raise CheckpointError(f"truncated fixed64 field in {what}")
            yield field, wire, struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end, what)
            if pos + length > end:
                raise CheckpointError(f"length-delimited field runs past the end of {what}")
            yield field, wire, bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise CheckpointError(f"truncated fixed32 field in {what}")
            yield field, wire, struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire} in {what}")


def _as_int64(value: int) -> int:
    """Protobuf int64 fields are two's complement in a 64-bit varint."""
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class TensorEntry:
    """Where one variable lives in the data files (a decoded BundleEntryProto)."""

    name: str
    dtype_enum: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c_masked: int | None

    @property
    def dtype(self) -> np.dtype:
        """numpy dtype of the stored values; raises for types numpy cannot hold."""
        try:
            return _DTYPES[self.dtype_enum]
        except KeyError:
            kind = _DTYPE_NAMES.get(self.dtype_enum, f"enum value {self.dtype_enum}")
            raise CheckpointError(f"variable {self.name!r} has unsupported dtype {kind}") from None


def _parse_shape(buf: bytes, what: str) -> tuple[int, ...]:
    dims: list[int] = []
    for field, wire, value in _proto_fields(buf, what):
        if field == 2 and wire == 2:  # repeated Dim dim
            size = 0
            for dfield, dwire, dvalue in _proto_fields(value, what):  # type: ignore[arg-type]
                if dfield == 1 and dwire == 0:
                    size = _as_int64(dvalue)  # type: ignore[arg-type]
            if size < 0:
                raise CheckpointError(f"negative or unknown dimension in {what}")
            dims.append(size)
        elif field == 3 and wire == 0 and value:
            raise CheckpointError(f"unknown-rank shape in {what}")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    what = f"the index entry of {name!r}"
    dtype = 0
    shape: tuple[int, ...] = ()
    shard_id = offset = size = 0
    crc: int | None = None
    for field, wire, value in _proto_fields(buf, what):
        if field == 1 and wire == 0:
            dtype = value  # type: ignore[assignment]
        elif field == 2 and wire == 2:
            shape = _parse_shape(value, what)  # type: ignore[arg-type]
        elif field == 3 and wire == 0:
            shard_id = value  # type: ignore[assignment]
        elif field == 4 and wire == 0:
            offset = _as_int64(value)  # type: ignore[arg-type]
        elif field == 5 and wire == 0:
            size = _as_int64(value)  # type: ignore[arg-type]
        elif field == 6 and wire == 5:
            crc = value  # type: ignore[assignment]
        elif field == 7:
            raise CheckpointError(f"variable {name!r} is partitioned into slices, which is not supported")
    if offset < 0 or size < 0:
        raise CheckpointError(f"negative offset or size in {what}")
    return TensorEntry(name, dtype, shape, shard_id, offset, size, crc)


def _parse_header(buf: bytes) -> tuple[int, int]:
    """BundleHeaderProto -> (num_shards, endianness: 0 little, 1 big)."""
    num_shards, endianness = 1, 0
    for field, wire, value in _proto_fields(buf, "the bundle header"):
        if field == 1 and wire == 0:
            num_shards = value  # type: ignore[assignment]
        elif field == 2 and wire == 0:
            endianness = value  # type: ignore[assignment]
    return num_shards, endianness


# --------------------------------------------------------------------------- table

def _read_block(data: bytes, offset: int, size: int, what: str) -> bytes:
    """Return the contents of the block at (offset, size), checking its trailer."""
    end = offset + size
    if offset < 0 or size < 0 or end + BLOCK_TRAILER_SIZE > len(data):
        raise CheckpointError(
            f"{what} (offset {offset}, size {size}) runs past the end of the index file "
            f"({len(data)} bytes): the file is truncated or corrupt"
        )
    contents = data[offset:end]
    compression = data[end]
    if compression != 0:
        raise CheckpointError(f"{what} is compressed (type {compression}); only uncompressed tables are supported")
    (stored,) = struct.unpack_from("<I", data, end + 1)
    actual = crc32c(data[offset : end + 1])
    if _unmask_crc(stored) != actual:
        raise CheckpointError(f"checksum mismatch in {what}: the index file is corrupt")
    return contents


def _block_entries(block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) pairs of one table block, undoing prefix compression."""
    if len(block) < 4:
        raise CheckpointError(f"{what} is too short to hold its restart count")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    restarts_start = len(block) - 4 - 4 * num_restarts
    if num_restarts == 0 or restarts_start < 0:
        raise CheckpointError(f"{what} has an invalid restart count ({num_restarts})")
    restarts = set(struct.unpack_from(f"<{num_restarts}I", block, restarts_start))
    pos = 0
    key = b""
    while pos < restarts_start:
        entry_at = pos
        shared, pos = _varint(block, pos, restarts_start, what)
        unshared, pos = _varint(block, pos, restarts_start, what)
        value_len, pos = _varint(block, pos, restarts_start, what)
        if shared > len(key) or (entry_at in restarts and shared != 0):
            raise CheckpointError(f"{what} has an invalid shared key prefix at byte {entry_at}")
        if pos + unshared + value_len > restarts_start:
            raise CheckpointError(f"an entry of {what} runs past the end of the block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _block_handle(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, end, what)
    size, pos = _varint(buf, pos, end, what)
    return offset, size, pos


def _table_items(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of an SSTable held in ``data``, in key order."""
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(f"index file is {len(data)} bytes, shorter than a table footer ({FOOTER_SIZE}): truncated")
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointError(
            f"index file does not end with the table magic number (found {magic:#018x}): "
            "it is truncated, corrupt or not a TensorFlow checkpoint index"
        )
    _, _, pos = _block_handle(footer, 0, 40, "the table footer")  # metaindex: unused by bundles
    index_offset, index_size, _ = _block_handle(footer, pos, 40, "the table footer")
    index = _read_block(data, index_offset, index_size, "the index block")
    previous = b""
    for _, handle in _block_entries(index, "the index block"):
        offset, size, _ = _block_handle(handle, 0, len(handle), "an index block entry")
        block = _read_block(data, offset, size, f"the data block at offset {offset}")
        for key, value in _block_entries(block, f"the data block at offset {offset}"):
            if key < previous:
                raise CheckpointError(f"index keys out of order at {key!r}: the index file is corrupt")
            previous = key
            yield key, value


# --------------------------------------------------------------------------- checkpoint

def _resolve_prefix(path: str | os.PathLike[str]) -> str:
    """Accept a prefix, a ``.index`` file, or a directory holding one checkpoint.

    A directory maps to the prefix ``dir/`` (musicnn's empty base name, files
    ``dir/.index``) when that exists, otherwise to its single ``*.index``.
    """
    p = Path(path)
    if p.is_dir():
        if (p / ".index").is_file():
            return str(p) + os.sep
        found = sorted(p.glob("*.index"))
        if not found:
            raise CheckpointError(f"no TensorFlow checkpoint index ('.index' or '*.index') in {p}")
        if len(found) > 1:
            raise CheckpointError(f"{len(found)} checkpoint indexes in {p}; pass the prefix of the one to read")
        return str(found[0])[: -len(".index")]
    text = str(path)
    if text.endswith(".index"):
        return text[: -len(".index")]
    return text


class TFCheckpoint:
    """A TensorFlow checkpoint opened for reading.

    ``TFCheckpoint(prefix)`` parses the index at once (so a corrupt index fails
    here); tensors are read lazily with `read` or all at once with `read_all`.
    ``prefix`` may also be the ``.index`` path or the checkpoint's directory.
    """

    def __init__(self, prefix: str | os.PathLike[str]) -> None:
        self.prefix = _resolve_prefix(prefix)
        index_path = self.prefix + ".index"
        try:
            data = Path(index_path).read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint index {index_path}: {exc}") from exc
        self.num_shards = 1
        self.entries: dict[str, TensorEntry] = {}
        saw_header = False
        try:
            for key, value in _table_items(data):
                if key == b"":
                    self.num_shards, endianness = _parse_header(value)
                    if endianness != 0:
                        raise CheckpointError("big-endian checkpoints are not supported")
                    saw_header = True
                    continue
                name = key.decode("utf-8")
                self.entries[name] = _parse_entry(name, value)
        except CheckpointError as exc:
            raise CheckpointError(f"{index_path}: {exc}") from None
        except UnicodeDecodeError:
            raise CheckpointError(f"{index_path}: a variable name is not valid UTF-8: the index is corrupt") from None
        if not saw_header:
            raise CheckpointError(f"{index_path}: no bundle header entry: not a TensorFlow V2 checkpoint index")
        if self.num_shards < 1:
            raise CheckpointError(f"{index_path}: invalid shard count {self.num_shards}")
        for entry in self.entries.values():
            if entry.shard_id >= self.num_shards:
                raise CheckpointError(f"{index_path}: variable {entry.name!r} names shard {entry.shard_id} of {self.num_shards}")

    def data_path(self, shard_id: int) -> str:
        """File name of one data shard (``PREFIX.data-00000-of-00001``)."""
        return f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}"

    def names(self) -> list[str]:
        """Variable names, sorted."""
        return sorted(self.entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Variable name -> shape."""
        return {name: e.shape for name, e in sorted(self.entries.items())}

    def _check(self, entry: TensorEntry) -> np.dtype:
        dtype = entry.dtype
        expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
        if expected != entry.size:
            raise CheckpointError(
                f"variable {entry.name!r}: shape {entry.shape} of {dtype} needs {expected} bytes but the index says {entry.size}"
            )
        return dtype

    def read(self, name: str, verify: bool = False) -> np.ndarray:
        """Read one variable as a numpy array (a fresh, writable copy)."""
        try:
            entry = self.entries[name]
        except KeyError:
            raise KeyError(f"no variable {name!r} in checkpoint {self.prefix}") from None
        dtype = self._check(entry)
        path = self.data_path(entry.shard_id)
        try:
            with open(path, "rb") as f:
                f.seek(entry.offset)
                raw = f.read(entry.size)
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint data {path}: {exc}") from exc
        return self._decode(entry, dtype, raw, path, verify)

    def _decode(self, entry: TensorEntry, dtype: np.dtype, raw: bytes, path: str, verify: bool) -> np.ndarray:
        if len(raw) != entry.size:
            raise CheckpointError(
                f"{path}: variable {entry.name!r} needs bytes {entry.offset}..{entry.offset + entry.size} "
                "but the file ends first: truncated"
            )
        if verify and entry.crc32c_masked is not None and crc32c(raw) != _unmask_crc(entry.crc32c_masked):
            raise CheckpointError(f"{path}: checksum mismatch for variable {entry.name!r}: the data file is corrupt")
        return np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()

    def read_all(self, verify: bool = False) -> dict[str, np.ndarray]:
        """Every variable, name -> array. ``verify`` checks each tensor's CRC32C (slow, pure Python)."""
        out: dict[str, np.ndarray] = {}
        by_shard: dict[int, list[TensorEntry]] = {}
        for entry in self.entries.values():
            by_shard.setdefault(entry.shard_id, []).append(entry)
        for shard, entries in sorted(by_shard.items()):
            path = self.data_path(shard)
            try:
                blob = Path(path).read_bytes()
            except OSError as exc:
                raise CheckpointError(f"cannot read checkpoint data {path}: {exc}") from exc
            for entry in entries:
                dtype = self._check(entry)
                raw = blob[entry.offset : entry.offset + entry.size]
                out[entry.name] = self._decode(entry, dtype, raw, path, verify)
        return dict(sorted(out.items()))


def read_checkpoint(prefix: str | os.PathLike[str], verify: bool = False) -> dict[str, np.ndarray]:
    """Shorthand: every variable of the checkpoint at ``prefix`` as numpy arrays."""
    return TFCheckpoint(prefix).read_all(verify=verify)
