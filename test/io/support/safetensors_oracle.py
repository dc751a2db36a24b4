"""An independent safetensors validator, written from the format's specification only.

Reads cases from stdin, one JSON object per line: {"id": ..., "b64": <the file's bytes>}.
Writes one JSON line per case, in order:
  {"id": ..., "verdict": "valid", "tensors": {name: [dtype, shape, hex of the bytes]}}
  {"id": ..., "verdict": "unsupported", "why": ...}   valid, but beyond this loader's limits
  {"id": ..., "verdict": "invalid", "why": ...}

The rules (https://github.com/huggingface/safetensors, "Format"):
  * 8 bytes: N, an unsigned little-endian 64-bit integer, the size of the header;
    at most 100,000,000.
  * N bytes: a UTF-8 JSON object, padded with spaces. The format's text says the header MUST
    begin with "{"; the reference reader does not enforce that (its check is commented out) and
    takes JSON whitespace on either side, so this validator does the same.
    Keys are tensor names, except "__metadata__", a map of strings to strings (null: none).
  * Each tensor: {"dtype": one of the format's names, "shape": [non-negative integers],
    "data_offsets": [BEGIN, END]}, offsets relative to the byte after the header; other
    fields are ignored. END - BEGIN = numel x bits / 8, a whole number of bytes.
  * The tensors, taken in order of their offsets, tile the rest of the file exactly: the first
    begins at 0, each begins where the previous ended, the last ends at the end of the file.
Limits of the loader under test (not of the format) make a valid file "unsupported": a dtype
it cannot hold, more than 64 dimensions, integers beyond 2**53 (JSON numbers in JavaScript).
"""
import base64
import json
import sys

MAX_HEADER = 100_000_000
BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
LOADABLE = {"BOOL", "U8", "F16", "BF16", "I32", "F32", "F64", "I64"}
SAFE = 2 ** 53


class Invalid(Exception):
    pass


class Unsupported(Exception):
    pass


def reject_constant(name):
    raise Invalid("JSON has no " + name)


def as_uint(value, what):
    """A JSON number that is a non-negative integer (1 and 1.0 are the same JSON number)."""
    if isinstance(value, bool):
        raise Invalid(what + " is a boolean")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise Invalid(what + " is not an integer")
        value = int(value)
    if not isinstance(value, int):
        raise Invalid(what + " is not a number")
    if value < 0:
        raise Invalid(what + " is negative")
    return value


def validate(data):
    if len(data) < 8:
        raise Invalid("shorter than the length prefix")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER:
        raise Invalid("header longer than the limit")
    if 8 + n > len(data):
        raise Invalid("header past the end")
    raw = data[8:8 + n]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("header not UTF-8")
    try:
        header = json.loads(text, parse_constant=reject_constant)
    except (ValueError, RecursionError) as e:
        raise Invalid("header not JSON: %s" % e)
    if not isinstance(header, dict):
        raise Invalid("header not an object")
    data_len = len(data) - 8 - n
    entries = []
    unsupported = None
    for name, entry in header.items():
        if name == "__metadata__":
            if entry is None:
                continue
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise Invalid("metadata is not a map of strings")
            continue
        if not isinstance(entry, dict):
            raise Invalid("entry %r is not an object" % name)
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in BITS:
            raise Invalid("entry %r: unknown dtype" % name)
        if not isinstance(shape, list):
            raise Invalid("entry %r: shape not a list" % name)
        shape = [as_uint(d, "shape") for d in shape]
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise Invalid("entry %r: offsets not a pair" % name)
        begin, end = (as_uint(o, "offset") for o in offsets)
        if end < begin:
            raise Invalid("entry %r: end before begin" % name)
        numel = 1
        for d in shape:
            numel *= d
        bits = numel * BITS[dtype]
        if bits % 8:
            raise Invalid("entry %r: not a whole number of bytes" % name)
        if end - begin != bits // 8:
            raise Invalid("entry %r: size does not match shape" % name)
        if unsupported is None:
            if dtype not in LOADABLE:
                unsupported = "dtype " + dtype
            elif len(shape) > 64:
                unsupported = "more than 64 dimensions"
            elif any(d >= SAFE for d in shape) or begin >= SAFE or end >= SAFE:
                unsupported = "an integer beyond 2**53"
        entries.append((begin, end, name, dtype, shape))
    cursor = 0
    for begin, end, name, _, _ in sorted(entries, key=lambda e: (e[0], e[1])):
        if begin != cursor:
            raise Invalid("entry %r begins at %d, not %d" % (name, begin, cursor))
        cursor = end
    if cursor != data_len:
        raise Invalid("tensors cover %d of %d data bytes" % (cursor, data_len))
    if unsupported:
        raise Unsupported(unsupported)
    start = 8 + n
    return {name: [dtype, shape, data[start + b:start + e].hex()] for b, e, name, dtype, shape in entries}


def main():
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        try:
            result = {"verdict": "valid", "tensors": validate(base64.b64decode(case["b64"]))}
        except Invalid as e:
            result = {"verdict": "invalid", "why": str(e)}
        except Unsupported as e:
            result = {"verdict": "unsupported", "why": str(e)}
        result["id"] = case["id"]
        out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
