"""Pillow plugin: `Image.open("x.pxz")` and `im.save("x.pxz")` once pixzip is imported.

Registering costs only the import of PIL.Image: the header is parsed when a file is opened (by the
torch-free formats.container) and the pixels are decoded on first access (pixzip.simple), as Pillow's
own plugins defer decoding to load(). Saving takes pixzip.encode's options:
`im.save("x.pxz", effort=2, model=..., tile=..., strip=True)`.
"""

from __future__ import annotations

from PIL import Image, ImageFile, ImagePalette

FORMAT = "PXZ"
MAGIC = b"\x89PXZ\r\n\x1a\n"          # formats.container.MAGIC (tests/test_api.py checks they agree)
SAVE_OPTIONS = ("effort", "model", "tile", "strip", "threads")


def _accept(prefix: bytes) -> bool:
    return prefix[:len(MAGIC)] == MAGIC


class PxzImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "pixzip lossless image"

    def _open(self):
        from .formats import container
        self._pxz = self.fp.read()
        header = container.read_header(self._pxz)[0]
        self._mode = _pillow_mode(header)
        self._size = (header.width, header.height)
        if header.transform:             # the header's mode and size are then the coded image's
            from .formats.transforms import TransformRecord
            record = TransformRecord.from_bytes(header.transform)
            self._mode = record.original_mode
            self._size = record.original_size(header.width, header.height)
        elif header.mode == "P":         # (a transformed original's palette comes with its pixels)
            self.palette = ImagePalette.raw(header.palette_mode, header.palette)
        if header.icc:
            self.info["icc_profile"] = header.icc
        self.tile = []

    def load(self):
        """Decode the whole file on first access (a .pxz has no partial reads Pillow could use)."""
        if self._pxz is not None:
            from .simple import decode_image
            decoded = decode_image(self._pxz)
            self._pxz = None
            self.im = decoded.im
            self.info.update({k: v for k, v in decoded.info.items() if k == "transparency"})
            if decoded.mode == "P":
                self.palette = decoded.palette.copy()
        return Image.Image.load(self)


def _pillow_mode(header) -> str:
    """The Pillow mode a file decodes to; 16-bit colour has none (pixzip.decode reads it)."""
    if header.depth == 16:
        if header.mode != "L":
            raise OSError(f"a 16-bit {header.mode} .pxz has no Pillow mode; read it with pixzip.decode")
        return "I;16"
    return header.mode


def _save(im: Image.Image, fp, filename):
    from .simple import encode
    options = {k: v for k, v in im.encoderinfo.items() if k in SAVE_OPTIONS}
    fp.write(encode(im, **options))


def register():
    Image.register_open(FORMAT, PxzImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".pxz")
    Image.register_mime(FORMAT, "image/x-pixzip")


register()
