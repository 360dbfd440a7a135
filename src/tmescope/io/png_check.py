"""Whether a PNG's pixel data fill the size its header claims.

Pillow decodes a PNG whose header claims more rows than its compressed data hold without a
word, padding the rest with black: a silently wrong image. The check below decompresses the
image data (bounded by the size the header implies) and compares the byte counts.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type → samples per pixel
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_data_complete(path: Path) -> bool:
    """``False`` when the image data of the PNG at ``path`` hold fewer bytes than its header
    needs; ``True`` otherwise (also for an interlaced PNG, or one this cannot parse: the
    decoder's own checks apply)."""
    data = Path(path).read_bytes()
    if not data.startswith(_SIGNATURE):
        return True
    header, parts, pos = None, [], len(_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR" and len(chunk) >= 13:
            header = struct.unpack(">IIBBBBB", chunk[:13])
        elif kind == b"IDAT":
            parts.append(chunk)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        return True
    width, height, depth, colour, _, _, interlace = header
    if interlace or colour not in _CHANNELS:
        return True
    expected = height * (1 + math.ceil(width * _CHANNELS[colour] * depth / 8))
    try:
        raw = zlib.decompressobj().decompress(b"".join(parts), expected)
    except zlib.error:
        return False
    return len(raw) >= expected
