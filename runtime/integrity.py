"""Integrity of a model file: a SHA-256 digest of everything but its card.

An exported model carries its card in the ONNX metadata, so a digest of the
whole file cannot live inside it. The digest covers every top-level field of
the serialized ``ModelProto`` except ``metadata_props`` (field 14): the graph
with its nodes and weights, opset imports, IR version, producer, local
functions. It is taken over the bytes as they are in the file, in file
order, so reading it needs no protobuf library: the top level of a protobuf
message is a flat list of (tag, value) records, which `_top_level_fields`
walks without decoding what is inside them.

A file whose digest does not match its card was changed after export (a
flipped byte, a truncated download, an edited weight): the runtime refuses
it. A file cut or overwritten so that its records no longer parse is
refused as not being an ONNX file at all. Needs only the standard library.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

#: ``ModelProto.metadata_props``: the one field the digest leaves out (it holds the card).
METADATA_FIELD = 14
DIGEST_SCOPE = "every top-level field of the ONNX ModelProto except metadata_props (graph, weights, opsets), in file order"


class IntegrityError(ValueError):
    """A model file whose bytes are not what its exporter wrote."""


def read_varint(data: bytes | memoryview, pos: int, end: int | None = None) -> tuple[int, int]:
    """A base-128 varint (protobuf, LevelDB) at ``pos``, before ``end``: (value, next position).

    Raises `IntegrityError` when the data ends inside it or it runs past 10 bytes.
    """
    end = len(data) if end is None else end
    value = shift = 0
    while True:
        if pos >= end:
            raise IntegrityError("the data ends inside a varint (truncated, or not the format expected)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise IntegrityError("a varint longer than 10 bytes (corrupt, or not the format expected)")


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    try:
        return read_varint(data, pos)
    except IntegrityError as exc:
        raise IntegrityError(f"{exc}: not a readable ONNX file") from None


def _top_level_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each top-level record, ``start:end`` covering tag and value."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise IntegrityError(f"field number 0 at byte {start} (corrupt or not an ONNX file)")
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise IntegrityError(f"protobuf wire type {wire} at byte {start} (corrupt or not an ONNX file)")
        if pos > len(data):
            raise IntegrityError(
                f"a record at byte {start} runs past the end of the file ({len(data)} bytes): the file is truncated or corrupt"
            )
        yield number, start, pos


def model_digest(data: bytes | memoryview) -> str:
    """SHA-256 (hex) of a serialized ONNX model without its ``metadata_props``."""
    view = memoryview(data)
    digest = hashlib.sha256()
    for number, start, end in _top_level_fields(view):
        if number != METADATA_FIELD:
            digest.update(view[start:end])
    return digest.hexdigest()


def check_digest(data: bytes | memoryview, expected: str, source: str) -> None:
    """Raise `IntegrityError` when ``data``'s digest is not ``expected`` (the card's)."""
    actual = model_digest(data)
    if actual != expected:
        raise IntegrityError(
            f"{source} is corrupt: its weights and graph do not match the SHA-256 digest in its model card "
            f"(card {expected[:16]}..., file {actual[:16]}...). The file was changed or damaged after export; "
            "download or export it again (built-in models: reinstall edgetag)"
        )


def read_metadata(data: bytes | memoryview) -> dict[str, str]:
    """The ``metadata_props`` map of a serialized ONNX model (key -> value), read without protobuf."""
    view = memoryview(data)
    out: dict[str, str] = {}
    for number, start, end in _top_level_fields(view):
        if number != METADATA_FIELD:
            continue
        _, pos = _varint(view, start)  # the tag
        _, pos = _varint(view, pos)  # the entry's length
        entry: dict[int, str] = {}
        for sub, sub_start, sub_end in _top_level_fields(view[pos:end]):
            _, value_at = _varint(view[pos:end], sub_start)
            length, value_at = _varint(view[pos:end], value_at)
            try:
                entry[sub] = bytes(view[pos + value_at : pos + sub_end]).decode("utf-8")
            except UnicodeDecodeError:
                raise IntegrityError("a metadata entry is not UTF-8 text (corrupt file)") from None
        if 1 in entry:
            out[entry[1]] = entry.get(2, "")
    return out
