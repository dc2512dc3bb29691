"""Every image format users keep in their folders decodes to what keras.utils.load_img gives.

load_img is the reference Keras users' models were fed with; two differences are deliberate
and tested against load_img of the corrected image: EXIF orientation is applied, and
16-bit grayscale is scaled rather than clipped to white.
"""

import numpy as np
import pytest
from PIL import Image, ImageOps

from tftrt_toolkit.data.images import decode_image, decode_image_file

SIZE = (30, 40)  # (height, width): every fixture image is resized, so resizing is compared too


def _load_img(path, size=SIZE):
    import keras

    return np.asarray(keras.utils.load_img(str(path), target_size=size, interpolation="bilinear"), dtype=np.uint8)


@pytest.fixture
def small_photo(photo):
    return Image.fromarray(photo).resize((90, 60))


@pytest.mark.parametrize("name, make, save_kwargs", [
    ("gray.png", lambda im: im.convert("L"), {}),
    ("rgba.png", lambda im: im.convert("RGBA"), {}),
    ("palette.png", lambda im: im.convert("P"), {}),
    ("photo.gif", lambda im: im, {}),
    ("photo.tif", lambda im: im, {}),
    ("photo.tiff", lambda im: im.convert("RGBA"), {"compression": "tiff_lzw"}),
    ("gray.tif", lambda im: im.convert("L"), {}),
    ("cmyk.jpg", lambda im: im.convert("CMYK"), {}),
    ("gray.jpg", lambda im: im.convert("L"), {}),
    ("photo.webp", lambda im: im, {}),
    ("photo.bmp", lambda im: im, {}),
])
def test_decodes_like_keras_load_img(tmp_path, small_photo, name, make, save_kwargs):
    path = tmp_path / name
    make(small_photo).save(path, **save_kwargs)
    pixels = decode_image(path, size=SIZE)
    assert pixels.shape == SIZE + (3,) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, _load_img(path))
    np.testing.assert_array_equal(decode_image(path, size=(60, 90)), _load_img(path, (60, 90)))  # native size


def _png_rgb16(array):
    """PNG bytes of a uint16 (H, W, 3) array: Pillow cannot write 16-bit RGB, cameras and scanners do."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    height, width, _ = array.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in array)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_sixteen_bit_rgb_png_like_load_img(tmp_path, photo):
    rng = np.random.default_rng(0)
    wide = photo[:60, :90].astype(np.uint16) * 257 + rng.integers(0, 257, size=(60, 90, 3)).astype(np.uint16)
    path = tmp_path / "wide.png"
    path.write_bytes(_png_rgb16(wide))
    pixels = decode_image(path, size=(60, 90))
    np.testing.assert_array_equal(pixels, _load_img(path, (60, 90)))
    np.testing.assert_array_equal(decode_image(path, size=SIZE), _load_img(path))


def test_sixteen_bit_gray_png_is_load_img_of_its_8_bit_image(tmp_path, small_photo):
    gray = np.asarray(small_photo.convert("L"))
    path8, path16 = tmp_path / "gray8.png", tmp_path / "gray16.png"
    Image.fromarray(gray).save(path8)
    Image.fromarray(gray.astype(np.uint16) * 257).save(path16)  # exactly the 8-bit values, widened
    assert Image.open(path16).mode == "I;16"
    np.testing.assert_array_equal(decode_image(path16, size=SIZE), _load_img(path8))
    assert _load_img(path16).min() == 255 or _load_img(path16).mean() > gray.mean()  # load_img clips it towards white


def test_exif_rotated_jpeg_is_load_img_of_the_upright_photo(tmp_path, small_photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": phones write this for portrait photos
    path = tmp_path / "portrait.jpg"
    small_photo.save(path, exif=exif, quality=95)
    upright = tmp_path / "upright.png"
    ImageOps.exif_transpose(Image.open(path)).save(upright)
    pixels = decode_image(path, size=(90, 60))
    np.testing.assert_array_equal(pixels, _load_img(upright, (90, 60)))
    np.testing.assert_array_equal(decode_image(path, size=SIZE), _load_img(upright))


def test_animated_gif_gives_its_first_frame_and_says_so(tmp_path, small_photo):
    frames = [small_photo, small_photo.rotate(90), small_photo.rotate(180)]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    pixels, note = decode_image_file(path, size=SIZE)
    assert note == "animated GIF, 3 frames: the first frame used"
    np.testing.assert_array_equal(pixels, _load_img(path))  # load_img reads the first frame too
    first = tmp_path / "first.gif"
    frames[0].save(first)
    np.testing.assert_array_equal(pixels, decode_image(first, size=SIZE))
    assert decode_image_file(first, size=SIZE)[1] is None


def test_multi_page_tiff_gives_its_first_page_and_says_so(tmp_path, small_photo):
    path = tmp_path / "pages.tif"
    small_photo.save(path, save_all=True, append_images=[small_photo.rotate(180)])
    pixels, note = decode_image_file(path, size=SIZE)
    assert note == "multi-frame TIFF, 2 frames: the first frame used"
    np.testing.assert_array_equal(pixels, _load_img(path))
