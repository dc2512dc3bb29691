"""Fixtures for the data tests: signatures built by hand, a real photo, image files on disk."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tftrt_toolkit.signature import ModelSignature, TensorInfo


def make_signature(*inputs):
    """make_signature(("images", (None, 32, 32, 3), "float32"), ...) -> ModelSignature."""
    return ModelSignature(
        key="serving_default",
        inputs=tuple(TensorInfo(name, shape, dtype) for name, shape, dtype in inputs),
        outputs=(TensorInfo("output_0", (None, 10), "float32"),),
    )


@pytest.fixture
def signature():
    return make_signature


@pytest.fixture
def image_signature():
    def build(height=32, width=32, channels=3, dtype="float32", batch=None, name="images"):
        return make_signature((name, (batch, height, width, channels), dtype))

    return build


@pytest.fixture(scope="session")
def photo():
    """A real photo (skimage's chelsea the cat), 300x451 RGB uint8."""
    import skimage.data

    return skimage.data.chelsea()


@pytest.fixture
def write_image(tmp_path):
    """write_image(name, image_or_array, **save_kwargs) -> path under tmp_path (format from the name)."""

    def write(name, image, **save_kwargs):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        image.save(path, **save_kwargs)
        return path

    return write


@pytest.fixture
def image_dir(tmp_path, photo):
    """A folder with 5 small images (nested, mixed formats) and a non-image file."""
    root = tmp_path / "images"
    small = Image.fromarray(photo).resize((48, 32))
    for relative in ("b.jpg", "a.png", "sub/c.bmp", "sub/deeper/d.webp", "e.JPEG"):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        small.save(path)
    (root / "notes.txt").write_text("not an image")
    return root


def png_header_only(width, height):
    """A PNG whose header claims width x height pixels: Pillow's bomb check reads only this."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def bomb_png(tmp_path):
    """A ~100-byte PNG claiming 20000x20000 (400M) pixels, over Pillow's limit."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20000, 20000))
    return path


@pytest.fixture
def encode():
    """encode(image, "JPEG", **save_kwargs) -> the file's bytes."""

    def encode_image(image, fmt, **kwargs):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **kwargs)
        return buffer.getvalue()

    return encode_image
