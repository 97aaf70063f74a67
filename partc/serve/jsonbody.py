"""Serve stage, request bodies: JSON read with the work bounded before anything is built.

A request body is refused as early and as cheaply as possible:

1. while it arrives (`BodyReader.feed`, C-speed `bytes.count` per chunk):
   more JSON values than any valid request for this endpoint holds (413;
   the byte limit is the transport's). Every JSON value but the first
   of a container is preceded by a comma, so `values <= 1 + '[' + '{' + ','`
   bounds the count from above (a comma inside a string only overcounts);
   `[],[],...` bodies that would build millions of lists stop here;
2. once complete (`loads`), before parsing: a run of more than MAX_DIGITS
   digits (422; Python would spend quadratic time converting such
   integers, and no float32 needs them), nesting deeper than MAX_DEPTH
   (400), both found with `bytes.translate` at C speed;
3. `json.loads` with NaN/Infinity refused (they are not JSON; 400); the
   few numbers that still overflow (1e400) become inf and are refused as
   out of range by whoever reads the value (422).

So the Python objects json.loads builds are bounded by the endpoint's value
limit, not by the body size. Step 2 and 3 run in a worker thread for large
bodies (partc/serve/app.py), but each is one C call holding the GIL: the
bounds, not the thread, are what keep the event loop responsive.
"""

from __future__ import annotations

import json

import numpy as np

from partc.errors import RequestError

MAX_DEPTH = 32  # JSON nesting a request may use (a v2 request with 4-d nested data needs 8)
MAX_DIGITS = 100  # longest run of digits in a body (float32 needs at most 9 significant ones)

_ALL_BYTES = bytes(range(256))
_NOT_STRUCTURE = _ALL_BYTES.translate(None, b'[]{}"')  # delete these to keep only brackets and quotes
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)


class BodyReader:
    """Collects a request body, refusing it (413) as soon as it holds more JSON values than `max_values`.

    `max_values` None: the body is collected, not counted (bodies nothing
    parses). `json_bytes`: how many leading bytes are JSON (the binary
    tensor extension puts raw tensor bytes after them); None: all of it.
    The size in bytes is the transport's to bound (--max-body).
    """

    def __init__(self, max_values: int | None, json_bytes: int | None = None):
        self.max_values = max_values
        self.json_bytes = json_bytes
        self.chunks: list[bytes] = []
        self.size = 0
        self.values = 1

    def feed(self, chunk: bytes) -> None:
        start = self.size
        self.size += len(chunk)
        self.chunks.append(chunk)
        if self.max_values is None:
            return
        json_part = chunk if self.json_bytes is None else chunk[:max(0, self.json_bytes - start)]
        if json_part:
            self.values += json_part.count(b",") + json_part.count(b"[") + json_part.count(b"{")
            if self.values > self.max_values:
                raise RequestError(413, f"request body holds more than {self.max_values} JSON values, more than "
                                        "any valid request to this endpoint (the model's max batch bounds it)")

    def body(self) -> bytes:
        return b"".join(self.chunks)


def loads(data: bytes) -> object:
    """Parse a JSON document whose size the reader has bounded; RequestError (400/422) when it is not acceptable."""
    if b"0" * (MAX_DIGITS + 1) in data.translate(_DIGITS_TO_ZERO):
        raise RequestError(422, f"a number in the body has more than {MAX_DIGITS} digits: out of range")
    depth = nesting_depth(data)
    if depth > MAX_DEPTH:
        raise RequestError(400, f"JSON nested {depth} levels deep; requests may nest at most {MAX_DEPTH}")
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the body is not UTF-8 text: {e.reason} at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise RequestError(400, f"malformed JSON: {e}") from None
    except ValueError as e:  # a bare NaN/Infinity (below); Python's own integer size limit
        raise RequestError(400 if "not JSON" in str(e) else 422, str(e)) from None


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of [] and {} outside strings (escaped quotes and backslashes handled).

    Only the brackets and quotes are kept (bytes.translate). A bracket is
    inside a string when an odd number of quotes precede it; the depth is
    the running sum of +1/-1 over the others: a Python loop for the few
    brackets of a small request, numpy for the thousands of nested data.
    """
    if b"\\" in data:  # escapes: drop escaped backslashes, then escaped quotes (numbers-only bodies have none)
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = data.translate(None, _NOT_STRUCTURE)
    return _depth_numpy(structure) if len(structure) > 256 else _depth_loop(structure)


def _depth_loop(structure: bytes) -> int:
    depth = deepest = 0
    in_string = False
    for byte in structure:
        if byte == 34:  # "
            in_string = not in_string
        elif in_string:
            continue
        elif byte in (91, 123):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _depth_numpy(structure: bytes) -> int:
    codes = np.frombuffer(structure, dtype=np.uint8)
    if not len(codes):
        return 0
    in_string = np.cumsum(codes == 34) % 2 == 1  # after an odd number of quotes
    step = np.where((codes == 91) | (codes == 123), 1, np.where((codes == 93) | (codes == 125), -1, 0))
    return max(0, int(np.cumsum(np.where(in_string, 0, step)).max()))


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON: send finite numbers")
