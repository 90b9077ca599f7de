"""Bounds on JSON that comes from outside: nesting depth and size, checked before decoding.

Decoders recurse once per level of nesting and stop at Python's recursion limit with a
``RecursionError`` (about 1,000 levels), so a 30 KB body of nested brackets used to reach the
decoder and come back as a 500. Nothing UBI accepts needs more than a few levels: an envelope
nests at most :data:`MAX_DEPTH` levels and is at most :data:`MAX_ENVELOPE_BYTES`; any other
request body at most :data:`MAX_DEPTH` levels and :data:`MAX_BODY_BYTES`.

The check costs two ``bytes.count`` calls for ordinary input: a text with at most
``MAX_DEPTH`` opening brackets cannot nest deeper, so only text with more is walked exactly.
"""

from __future__ import annotations

MAX_DEPTH = 32
MAX_ENVELOPE_BYTES = 64 * 1024
#: Request bodies other than event batches (config, queries, feedback, deletions).
MAX_BODY_BYTES = 1 << 20

_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def too_deep(text: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when the JSON ``text`` nests arrays and objects more than ``limit`` levels
    (brackets inside strings do not count). Malformed text is the decoder's to refuse."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSE:
            depth -= 1
    return False
