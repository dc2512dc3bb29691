"""Decoding image files: RGB conversion, EXIF orientation, resizing, and every way a file can be bad."""

import os

import numpy as np
import pytest
from PIL import Image

from tftrt_toolkit.data.images import decode_image, iter_image_files
from tftrt_toolkit.errors import DataError


def test_decodes_a_photo_to_rgb_uint8_at_the_requested_size(write_image, photo):
    path = write_image("cat.png", photo)
    pixels = decode_image(path, size=(32, 48))
    expected = np.asarray(Image.fromarray(photo).resize((48, 32), Image.Resampling.BILINEAR))
    assert pixels.shape == (32, 48, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, expected)


def test_keeps_pixels_untouched_when_already_the_right_size(write_image, photo):
    path = write_image("cat.png", photo)
    np.testing.assert_array_equal(decode_image(path, size=photo.shape[:2]), photo)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "1"])
def test_converts_other_modes_to_rgb_like_pillow(write_image, photo, mode):
    source = Image.fromarray(photo).resize((40, 30)).convert(mode)
    name = "image.jpg" if mode == "CMYK" else "image.png"
    path = write_image(name, source)
    pixels = decode_image(path, size=(30, 40))
    assert pixels.shape == (30, 40, 3)
    with Image.open(path) as reread:
        np.testing.assert_array_equal(pixels, np.asarray(reread.convert("RGB")))


def test_grayscale_gives_equal_channels(write_image, photo):
    path = write_image("gray.png", Image.fromarray(photo).convert("L"))
    pixels = decode_image(path, size=(20, 20))
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 1])
    np.testing.assert_array_equal(pixels[..., 1], pixels[..., 2])


def test_palette_with_transparency_drops_alpha(write_image):
    palette_image = Image.new("P", (8, 8), 0)
    palette_image.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    palette_image.info["transparency"] = 0
    path = write_image("transparent.png", palette_image)
    pixels = decode_image(path, size=(8, 8))
    np.testing.assert_array_equal(pixels[0, 0], [255, 0, 0])


def test_sixteen_bit_grayscale_is_scaled_not_clipped(write_image):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = write_image("depth.png", Image.fromarray(ramp))
    pixels = decode_image(path, size=(64, 64))
    np.testing.assert_array_equal(pixels[..., 0], np.rint(ramp / 257.0).astype(np.uint8))
    assert pixels.min() == 0 and pixels.max() == 255


def test_single_channel_decode_for_grayscale_models(write_image, photo):
    path = write_image("cat.jpg", photo)
    pixels = decode_image(path, size=(16, 16), channels=1)
    assert pixels.shape == (16, 16, 1)


def _two_color_image():
    """40 wide, 20 tall: left half red, right half blue."""
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    return Image.fromarray(array)


@pytest.mark.parametrize(
    "orientation, upright_size, red_at, blue_at",
    [
        (1, (20, 40), (10, 5), (10, 35)),  # as stored: red left
        (3, (20, 40), (10, 35), (10, 5)),  # rotated 180: red right
        (6, (40, 20), (5, 10), (35, 10)),  # rotate 90 CW to view: red on top
        (8, (40, 20), (35, 10), (5, 10)),  # rotate 90 CCW to view: red at the bottom
    ],
)
def test_exif_orientation_turns_the_image_upright(write_image, orientation, upright_size, red_at, blue_at):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = write_image(f"oriented_{orientation}.jpg", _two_color_image(), exif=exif, quality=95)
    pixels = decode_image(path, size=upright_size).astype(int)
    assert pixels.shape[:2] == upright_size
    assert pixels[red_at][0] > 200 and pixels[red_at][2] < 60
    assert pixels[blue_at][2] > 200 and pixels[blue_at][0] < 60


def _assert_one_line_naming(error, path, *words):
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message


def test_zero_byte_file_is_a_data_error(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(DataError) as error:
        decode_image(path, size=(8, 8))
    _assert_one_line_naming(error, path, "empty (0 bytes)", "remove it")


def test_text_with_an_image_extension_is_a_data_error(tmp_path):
    path = tmp_path / "readme.jpg"
    path.write_text("this is not a picture")
    with pytest.raises(DataError) as error:
        decode_image(path, size=(8, 8))
    _assert_one_line_naming(error, path, "not a JPEG, PNG, GIF, TIFF, BMP or WebP image")


def test_other_formats_are_refused_even_with_an_image_extension(tmp_path, photo):
    path = tmp_path / "actually_a.ppm.png"
    Image.fromarray(photo).save(path, format="PPM")
    with pytest.raises(DataError) as error:
        decode_image(path, size=(8, 8))
    _assert_one_line_naming(error, path, "not a JPEG, PNG, GIF, TIFF, BMP or WebP image")


@pytest.mark.parametrize("fmt, name", [("JPEG", "cut.jpg"), ("PNG", "cut.png"), ("WEBP", "cut.webp"), ("BMP", "cut.bmp")])
def test_truncated_image_is_a_data_error(tmp_path, photo, encode, fmt, name):
    data = encode(Image.fromarray(photo), fmt)
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as error:
        decode_image(path, size=(8, 8))
    _assert_one_line_naming(error, path, "corrupt or truncated")


def test_decompression_bomb_is_a_data_error(bomb_png):
    with pytest.raises(DataError) as error:
        decode_image(bomb_png, size=(8, 8))
    _assert_one_line_naming(error, bomb_png, "too large to decode safely", "MAX_IMAGE_PIXELS")


def test_images_between_one_and_two_times_the_limit_are_refused_too(write_image, photo, monkeypatch):
    path = write_image("big.png", Image.fromarray(photo).resize((40, 40)))  # 1,600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow itself only warns below 2,000
    with pytest.raises(DataError) as error:
        decode_image(path, size=(8, 8))
    _assert_one_line_naming(error, path, "too large to decode safely")


def test_randomly_corrupted_images_give_data_errors_or_pixels(tmp_path, photo, encode):
    """Fuzz: a few hundred seeded byte flips, truncations and splices never crash the decoder."""
    rng = np.random.default_rng(1234)
    small = Image.fromarray(photo).resize((48, 32))
    originals = [encode(small, fmt) for fmt in ("JPEG", "PNG", "BMP", "WEBP")] + [encode(small.convert("P"), "PNG")]
    exif = Image.Exif()
    exif[0x0112] = 6
    originals.append(encode(small, "JPEG", exif=exif))
    path = tmp_path / "fuzzed.jpg"
    outcomes = {"decoded": 0, "DataError": 0}
    for trial in range(300):
        data = bytearray(originals[trial % len(originals)])
        damage = trial % 3
        if damage == 0:
            for _ in range(int(rng.integers(1, 20))):
                data[int(rng.integers(len(data)))] = int(rng.integers(256))
        elif damage == 1:
            data = data[: int(rng.integers(1, len(data)))]
        else:
            start = int(rng.integers(len(data)))
            data[start:start + int(rng.integers(1, 64))] = rng.bytes(int(rng.integers(1, 64)))
        path.write_bytes(bytes(data))
        try:
            pixels = decode_image(path, size=(16, 16))
        except DataError as error:
            assert "\n" not in str(error) and str(path) in str(error)
            outcomes["DataError"] += 1
        else:
            assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
            outcomes["decoded"] += 1
    assert outcomes["DataError"] > 50 and outcomes["decoded"] > 0


def test_directory_walk_is_recursive_sorted_and_skips_hidden_and_other_files(image_dir):
    (image_dir / ".hidden.jpg").write_bytes(b"junk")
    (image_dir / ".cache").mkdir()
    (image_dir / ".cache" / "thumb.jpg").write_bytes(b"junk")
    (image_dir / "sub" / "._c.bmp").write_bytes(b"macOS resource fork")
    relative = [path.relative_to(image_dir).as_posix() for path in iter_image_files(image_dir)]
    assert relative == ["a.png", "b.jpg", "e.JPEG", "sub/c.bmp", "sub/deeper/d.webp"]


def test_directory_walk_does_not_follow_directory_symlinks(image_dir):
    os.symlink(image_dir, image_dir / "sub" / "loop")
    assert len(list(iter_image_files(image_dir))) == 5
