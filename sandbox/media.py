"""Media files as Telegram handles them: image sizes, the photo sizes it makes, test images.

Why: a photo a person sends reaches the bot as several PhotoSize entries (Telegram scales it
down to a few boxes), and Telegram refuses a photo it cannot read or whose dimensions it does
not accept. The stand-in needs the dimensions of the images it is given to do the same, and
tests need small but real images to send; this builds them with the standard library only.
"""

from __future__ import annotations

import struct
import zlib

#: Telegram's type of a file by the kind of message it came with. Photos are one class and all
#: the others another: a file_id of one class cannot be sent as the other.
FILE_TYPES = {"photo": "Photo", "document": "Document", "voice": "VoiceNote", "audio": "Audio",
              "video": "Video", "video_note": "VideoNote", "sticker": "Sticker", "animation": "Animation"}
#: The Bot API type of each kind of media message's object (Message.voice is a Voice, ...).
MEDIA_TYPES = {"document": "Document", "voice": "Voice", "audio": "Audio", "video": "Video",
               "video_note": "VideoNote", "sticker": "Sticker", "animation": "Animation"}
#: Sides of the boxes Telegram scales a photo into (its "s", "m", "x", "y" and "w" sizes).
PHOTO_SIZE_BOXES = (90, 320, 800, 1280, 2560)
#: Telegram's limits on a photo: width + height at most 10000 and a side ratio of at most 20.
MAX_PHOTO_SIDES_SUM = 10_000
MAX_PHOTO_RATIO = 20

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_GIF_SIGNATURES = (b"GIF87a", b"GIF89a")
_BMP_SIGNATURE = b"BM"
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
#: The nominal size given to a readable image whose header the stand-in does not parse (WEBP).
NOMINAL_SIZE = (512, 512)


def is_image(content: bytes) -> bool:
    """Whether Telegram could read `content` as a photo (PNG, JPEG, GIF, BMP or WEBP)."""
    return (content.startswith((_PNG_SIGNATURE, _JPEG_SIGNATURE, _BMP_SIGNATURE, *_GIF_SIGNATURES))
            or (content.startswith(b"RIFF") and content[8:12] == b"WEBP"))


def image_size(content: bytes) -> tuple[int, int]:
    """(width, height) read from a PNG, JPEG, GIF or BMP header; NOMINAL_SIZE for other images."""
    if content.startswith(_PNG_SIGNATURE) and len(content) >= 24:
        width, height = struct.unpack(">II", content[16:24])
        return width, height
    if content.startswith(_JPEG_SIGNATURE):
        return _jpeg_size(content) or NOMINAL_SIZE
    if content.startswith(_GIF_SIGNATURES) and len(content) >= 10:
        width, height = struct.unpack("<HH", content[6:10])
        return width, height
    if content.startswith(_BMP_SIGNATURE) and len(content) >= 26:
        width, height = struct.unpack("<ii", content[18:26])
        return abs(width), abs(height)
    return NOMINAL_SIZE


def _jpeg_size(content: bytes) -> tuple[int, int] | None:
    """The frame size from a JPEG's first SOFn segment."""
    index = 2
    while index + 4 <= len(content):
        if content[index] != 0xFF:
            return None
        marker = content[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        (length,) = struct.unpack(">H", content[index + 2:index + 4])
        if marker in _SOF_MARKERS and index + 9 <= len(content):
            height, width = struct.unpack(">HH", content[index + 5:index + 9])
            return width, height
        index += 2 + length
    return None


def photo_dimensions_ok(width: int, height: int) -> bool:
    """Telegram's rule for photos (sendPhoto documents it): sides sum and ratio. A header that
    gives no size (a stand-in image of a test) is not judged."""
    if width <= 0 or height <= 0:
        return True
    return width + height <= MAX_PHOTO_SIDES_SUM and max(width, height) / min(width, height) <= MAX_PHOTO_RATIO


def photo_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """The sizes Telegram keeps of a photo, smallest first: one per box smaller than the photo,
    then the photo itself (scaled into the largest box if it is bigger)."""
    longest = max(width, height)
    sizes = []
    for box in PHOTO_SIZE_BOXES:
        if box >= longest:
            sizes.append((width, height))
            return sizes
        sizes.append((max(1, round(width * box / longest)), max(1, round(height * box / longest))))
    return sizes


# --- images for tests -------------------------------------------------------------------------


def png(width: int = 640, height: int = 480, rgb: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    """A valid single-colour PNG (8-bit RGB)."""
    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(row * height, 9)) + _png_chunk(b"IEND", b""))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def jpeg(width: int = 640, height: int = 480, grey: int = 128) -> bytes:
    """A valid single-colour greyscale baseline JPEG.

    Every 8x8 block of a flat image has only its DC coefficient, so the scan is the first
    block's DC value and then, for each block, "no change" and end-of-block.
    """
    if not (0 < width < 65536 and 0 < height < 65536 and 0 <= grey <= 255):
        raise ValueError("width and height must be 1-65535 and grey 0-255")
    dc = 8 * (grey - 128)  # the DC coefficient of a flat block, with every quantizer 1
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    bits = _BitWriter()
    for index in range(blocks):
        diff = dc if index == 0 else 0
        category = abs(diff).bit_length()
        bits.write(*_DC_CODES[category])
        if category:
            bits.write(diff if diff > 0 else diff + (1 << category) - 1, category)
        bits.write(0, 1)  # end of block: the one code of the AC table
    return b"".join([
        b"\xff\xd8",
        _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
        _segment(0xDB, b"\x00" + b"\x01" * 64),
        _segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
        _segment(0xC4, b"\x00" + bytes(_DC_BITS) + bytes(range(12))),
        _segment(0xC4, b"\x10" + b"\x01" + bytes(15) + b"\x00"),
        _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
        bits.flush(),
        b"\xff\xd9",
    ])


# The standard luminance DC table (JPEG Annex K.3): code lengths per category 0-11.
_DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)


def _canonical_codes(bits: tuple[int, ...]) -> list[tuple[int, int]]:
    codes = []
    code = 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            codes.append((code, length))
            code += 1
        code <<= 1
    return codes


_DC_CODES = _canonical_codes(_DC_BITS)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


class _BitWriter:
    """Entropy-coded data: bits packed most significant first, 0xFF bytes stuffed with 0x00."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._value = 0
        self._count = 0

    def write(self, value: int, length: int) -> None:
        self._value = (self._value << length) | value
        self._count += length
        while self._count >= 8:
            self._count -= 8
            self._emit((self._value >> self._count) & 0xFF)
        self._value &= (1 << self._count) - 1

    def flush(self) -> bytes:
        if self._count:
            pad = 8 - self._count
            self.write((1 << pad) - 1, pad)  # padded with 1 bits
        return bytes(self._out)

    def _emit(self, byte: int) -> None:
        self._out.append(byte)
        if byte == 0xFF:
            self._out.append(0x00)


def webp_sticker_placeholder(seed: str = "") -> bytes:
    """Bytes with a WEBP container header, standing for a sticker file Telegram already has.

    Not a decodable image: nothing in the stand-in or the bot decodes stickers.
    """
    payload = b"VP8L" + seed.encode("utf-8")[:64]
    return b"RIFF" + struct.pack("<I", len(payload) + 4) + b"WEBP" + payload
