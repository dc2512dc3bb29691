"""Each data spec kind (image folder, image paths, .npy, .npz, synthetic) and each way it can be wrong."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from tftrt_toolkit.data.images import decode_image
from tftrt_toolkit.data.preprocess import preprocess_pixels
from tftrt_toolkit.data.samples import Batch
from tftrt_toolkit.data.sources import open_source
from tftrt_toolkit.errors import ConfigError, DataError

IMAGE_ORDER = ["a.png", "b.jpg", "e.JPEG", "sub/c.bmp", "sub/deeper/d.webp"]


def _all_rows(source, batch_size=2, **kwargs):
    batches = list(source.batches(batch_size, **kwargs))
    assert all(isinstance(batch, Batch) for batch in batches)
    sources = [path for batch in batches for path in batch.sources]
    arrays = {name: np.concatenate([batch.inputs[name] for batch in batches]) for name in batches[0].inputs}
    return batches, sources, arrays


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- image folders and paths


def test_directory_streams_every_image_in_sorted_order_with_its_path(image_dir, image_signature):
    source = open_source(image_dir, image_signature())
    assert source.count() == 5
    batches, sources, arrays = _all_rows(source, batch_size=2)
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert [str(p) for p in sources] == [str(image_dir / name) for name in IMAGE_ORDER]
    assert arrays["images"].shape == (5, 32, 32, 3) and arrays["images"].dtype == np.float32


def test_directory_pixels_are_the_decoded_images_with_the_chosen_preprocessing(image_dir, image_signature):
    source = open_source(str(image_dir), image_signature(), model_hint="keras:VGG16")
    assert source.preprocess == "caffe"
    _, sources, arrays = _all_rows(source)
    for row, path in enumerate(sources):
        expected = preprocess_pixels(decode_image(path, size=(32, 32)), "caffe")
        np.testing.assert_array_equal(arrays["images"][row], expected)


def test_auto_without_hint_feeds_raw_pixels(image_dir, image_signature):
    source = open_source(image_dir, image_signature())
    assert source.preprocess == "none"
    _, sources, arrays = _all_rows(source)
    np.testing.assert_array_equal(arrays["images"][0], decode_image(sources[0], size=(32, 32)))


def test_explicit_image_paths_keep_their_order(image_dir, image_signature):
    paths = [image_dir / "sub" / "c.bmp", image_dir / "a.png"]
    source = open_source(paths, image_signature(), preprocess="tf")
    _, sources, arrays = _all_rows(source)
    assert sources == [str(path) for path in paths]
    assert arrays["images"].min() >= -1.0 and arrays["images"].max() <= 1.0


def test_a_single_image_path(image_dir, image_signature):
    source = open_source(image_dir / "b.jpg", image_signature())
    assert source.count() == 1
    assert [len(batch) for batch in source.batches(8)] == [1]


def test_limit_stops_early_without_reading_further(image_dir, image_signature):
    source = open_source(image_dir, image_signature())
    (image_dir / "zz_broken.jpg").write_text("never read")
    assert [len(batch) for batch in source.batches(2, limit=3)] == [2, 1]
    assert [len(batch) for batch in source.batches(2, limit=3, drop_remainder=True)] == [2]


def test_batches_are_the_same_on_every_pass(image_dir, image_signature):
    source = open_source(image_dir, image_signature(), preprocess="torch")
    first = [batch.inputs["images"] for batch in source.batches(3)]
    second = [batch.inputs["images"] for batch in source.batches(3)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_grayscale_model_gets_one_channel(image_dir, image_signature):
    source = open_source(image_dir, image_signature(channels=1), preprocess="tf")
    batch = next(source.batches(5))
    assert batch.inputs["images"].shape == (5, 32, 32, 1)


def test_grayscale_model_refuses_rgb_only_modes(image_dir, image_signature):
    with pytest.raises(DataError, match="needs RGB") as error:
        open_source(image_dir, image_signature(channels=1), preprocess="caffe")
    _one_line(error)


def test_uint8_input_gets_raw_pixels(image_dir, image_signature):
    source = open_source(image_dir, image_signature(dtype="uint8"), model_hint="keras:ResNet50")
    batch = next(source.batches(2))
    assert batch.inputs["images"].dtype == np.uint8
    np.testing.assert_array_equal(batch.inputs["images"][0], decode_image(batch.sources[0], size=(32, 32)))


def test_uint8_input_refuses_an_explicit_mode(image_dir, image_signature):
    with pytest.raises(DataError, match="takes uint8 pixels, so preprocess 'caffe' cannot apply"):
        open_source(image_dir, image_signature(dtype="uint8"), preprocess="caffe")


def test_float16_input_gets_float16(image_dir, image_signature):
    batch = next(open_source(image_dir, image_signature(dtype="float16"), preprocess="tf").batches(2))
    assert batch.inputs["images"].dtype == np.float16


def test_channels_first_model_gets_chw_images(image_dir, signature):
    nchw = signature(("pixels", (None, 3, 24, 40), "float32"))
    nhwc = signature(("pixels", (None, 24, 40, 3), "float32"))
    first = next(open_source(image_dir, nchw, preprocess="caffe").batches(5)).inputs["pixels"]
    last = next(open_source(image_dir, nhwc, preprocess="caffe").batches(5)).inputs["pixels"]
    assert first.shape == (5, 3, 24, 40)
    np.testing.assert_array_equal(first, np.transpose(last, (0, 3, 1, 2)))


def test_dynamic_spatial_dims_need_input_shape(image_dir, signature):
    dynamic = signature(("images", (None, None, None, 3), "float32"))
    with pytest.raises(DataError, match=r"unknown height/width .*--input_shape=HxW") as error:
        open_source(image_dir, dynamic)
    _one_line(error)
    for given in ("40x24", (40, 24), "40x24x3", "1x40x24x3", {"images": "40x24"}):
        batch = next(open_source(image_dir, dynamic, input_shape=given).batches(2))
        assert batch.inputs["images"].shape == (2, 40, 24, 3), given


def test_unknown_rank_needs_input_shape(image_dir, signature):
    unknown = signature(("images", None, "float32"))
    with pytest.raises(DataError, match="unknown rank"):
        open_source(image_dir, unknown)
    assert next(open_source(image_dir, unknown, input_shape="16x16").batches(1)).inputs["images"].shape == (1, 16, 16, 3)


def test_input_shape_cannot_contradict_known_dims(image_dir, image_signature):
    with pytest.raises(DataError, match="contradicts input 'images'"):
        open_source(image_dir, image_signature(), input_shape="64x64")
    with pytest.raises(DataError, match="is not a shape"):
        open_source(image_dir, image_signature(), input_shape="big")


def test_images_cannot_feed_a_multi_input_model(image_dir, signature):
    two = signature(("a", (None, 32, 32, 3), "float32"), ("b", (None, 4), "float32"))
    with pytest.raises(DataError, match=r"2 inputs \(a, b\); images feed single-input models: use --data=FILE.npz"):
        open_source(image_dir, two)


def test_images_cannot_feed_a_non_image_input(image_dir, signature):
    with pytest.raises(DataError, match="images cannot feed it"):
        open_source(image_dir, signature(("features", (None, 16), "float32")))


def test_fixed_batch_dim_must_match_batch_size(image_dir, image_signature):
    source = open_source(image_dir, image_signature(batch=2))
    with pytest.raises(DataError, match="takes batches of exactly 2; use --batch_size=2"):
        next(source.batches(4))
    assert [len(batch) for batch in source.batches(2)] == [2, 2]  # the fifth image cannot form a batch


def test_batch_size_must_be_positive(image_dir, image_signature):
    source = open_source(image_dir, image_signature())
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
            next(source.batches(bad))


def test_undecodable_image_is_skipped_and_summed_up_in_one_line(image_dir, image_signature, caplog):
    bad = image_dir / "c_bad.jpg"
    bad.write_text("not really a jpeg")
    source = open_source(image_dir, image_signature())
    assert source.count() == 6
    with caplog.at_level(logging.WARNING, logger="tftrt_toolkit.data"):
        _, sources, _ = _all_rows(source)
        _all_rows(source)  # a second pass (e.g. TF-TRT calibrating again) does not say it again
    assert str(bad) not in sources and len(sources) == 5
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == ["skipped 2 files: 1 not an image (.txt), 1 unreadable (c_bad.jpg)"]
    assert [(f.path, f.reason) for f in source.skipped_files] == [(str(bad), "unreadable"),
                                                                  (str(image_dir / "notes.txt"), "not an image")]
    assert "not a JPEG, PNG" in source.skipped_files[0].detail


def test_bad_files_before_the_first_good_one_are_listed_too(tmp_path, photo, image_signature):
    root = tmp_path / "data"
    root.mkdir()
    (root / "a_empty.jpg").write_bytes(b"")
    (root / "b_text.png").write_text("hello")
    Image.fromarray(photo).save(root / "c_good.jpg")
    source = open_source(root, image_signature())
    _, sources, _ = _all_rows(source)
    assert sources == [str(root / "c_good.jpg")]
    assert [(os.path.basename(f.path), f.detail) for f in source.skipped_files] == [
        ("a_empty.jpg", "is empty (0 bytes)"), ("b_text.png", "is not a JPEG, PNG, GIF, TIFF, BMP or WebP image (Pillow cannot identify it)")]
    assert source.skipped_summary() == "skipped 2 files: 2 unreadable (a_empty.jpg, b_text.png)"


def test_no_decodable_images_is_one_error_naming_the_first(tmp_path, image_signature, bomb_png):
    root = bomb_png.parent
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.webp").write_text("hello")
    source = open_source(root, image_signature())
    with pytest.raises(DataError) as error:
        next(source.batches(1))
    message = _one_line(error)
    assert message.startswith(f"no decodable images in directory {root} (3 tried); first: {bomb_png} is too large to decode safely")


def test_a_single_corrupt_image_reports_its_own_problem(tmp_path, photo, encode, image_signature):
    path = tmp_path / "cut.jpg"
    path.write_bytes(encode(Image.fromarray(photo), "JPEG")[:500])
    with pytest.raises(DataError, match=r"cut.jpg is a corrupt or truncated image .*re-export it or remove it") as error:
        next(open_source(path, image_signature()).batches(1))
    _one_line(error)


def test_zero_byte_and_non_image_files_with_image_extensions(tmp_path, image_signature):
    empty = tmp_path / "zero.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"zero.png is empty \(0 bytes\)"):
        next(open_source(empty, image_signature()).batches(1))
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"%PDF-1.4 not an image")
    with pytest.raises(DataError, match="fake.jpg is not a JPEG, PNG, GIF, TIFF, BMP or WebP image"):
        next(open_source(fake, image_signature()).batches(1))


def test_decompression_bomb_in_a_folder_is_a_clear_error(bomb_png, image_signature):
    with pytest.raises(DataError, match=r"bomb.png is too large to decode safely .*MAX_IMAGE_PIXELS"):
        next(open_source(bomb_png, image_signature()).batches(1))


def test_empty_directory_is_a_data_error(tmp_path, image_signature):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images in directory .*empty .*searched recursively") as error:
        open_source(tmp_path / "empty", image_signature())
    _one_line(error)


def test_directory_without_images_names_what_it_holds(tmp_path, image_signature):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "labels.csv").write_text("a,b")
    with pytest.raises(DataError, match=r"no images in directory .*docs.*it holds other files, e.g. .*labels.csv"):
        open_source(tmp_path / "docs", image_signature())


def test_missing_and_unsupported_paths(tmp_path, image_signature):
    with pytest.raises(DataError, match=r"data '.*nowhere' does not exist; pass a directory of images"):
        open_source(tmp_path / "nowhere", image_signature())
    table = tmp_path / "table.csv"
    table.write_text("1,2,3")
    with pytest.raises(DataError, match=r"is not a directory, image .*\.npy or \.npz file"):
        open_source(table, image_signature())
    with pytest.raises(DataError, match="is not an image file"):
        open_source([table], image_signature())
    with pytest.raises(DataError, match="does not exist"):
        open_source([tmp_path / "gone.jpg"], image_signature())
    with pytest.raises(DataError, match="no data given"):
        open_source([], image_signature())


def test_string_inputs_are_a_data_error(image_dir, signature):
    text_model = signature(("text", (None,), "string"))
    for spec in (image_dir, "synthetic"):
        with pytest.raises(DataError, match="input 'text' takes strings; .*export a signature that takes the preprocessed numbers"):
            open_source(spec, text_model)


def test_unknown_preprocess_mode(image_dir, image_signature):
    with pytest.raises(DataError, match="unknown preprocess mode 'imagenet'; use one of auto, caffe, tf, torch, none"):
        open_source(image_dir, image_signature(), preprocess="imagenet")


# --------------------------------------------------------------------------- .npy and .npz


def test_npy_rows_feed_a_single_input_model(tmp_path, image_signature):
    array = np.random.default_rng(0).uniform(0, 255, size=(5, 32, 32, 3)).astype(np.float32)
    path = tmp_path / "inputs.npy"
    np.save(path, array)
    source = open_source(path, image_signature())
    assert source.count() == 5 and source.preprocess == "none"
    _, sources, arrays = _all_rows(source)
    np.testing.assert_array_equal(arrays["images"], array)
    assert sources[3] == f"{path}[3]"


def test_npy_float64_is_cast_to_the_input_dtype(tmp_path, image_signature):
    path = tmp_path / "inputs.npy"
    np.save(path, np.ones((2, 32, 32, 3)))
    batch = next(open_source(path, image_signature()).batches(2))
    assert batch.inputs["images"].dtype == np.float32


def test_npy_of_raw_pixels_can_be_preprocessed_explicitly(tmp_path, image_signature, photo):
    pixels = np.stack([np.asarray(Image.fromarray(photo).resize((32, 32)))] * 2)
    path = tmp_path / "pixels.npy"
    np.save(path, pixels)
    batch = next(open_source(path, image_signature(), preprocess="caffe").batches(2))
    np.testing.assert_array_equal(batch.inputs["images"], preprocess_pixels(pixels, "caffe"))


def test_npy_of_the_wrong_shape_says_expected_and_got(tmp_path, image_signature):
    path = tmp_path / "mnist.npy"
    np.save(path, np.zeros((10, 28, 28), np.float32))
    with pytest.raises(DataError) as error:
        open_source(path, image_signature())
    assert _one_line(error) == (
        f"{path} holds float32 of shape 10x28x28; input 'images' expects float32 of shape Nx32x32x3 (N = number of samples)"
    )


def test_npy_of_the_wrong_dtype_says_expected_and_got(tmp_path, signature):
    path = tmp_path / "ids.npy"
    np.save(path, np.zeros((4, 8), np.float32))
    with pytest.raises(DataError) as error:
        open_source(path, signature(("input_ids", (None, 8), "int32")))
    assert _one_line(error) == (
        f"{path} holds float32 of shape 4x8; input 'input_ids' expects int32 of shape Nx8: save it as int32"
    )


def test_npy_with_no_rows_or_objects_or_garbage(tmp_path, image_signature):
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 32, 32, 3), np.float32))
    with pytest.raises(DataError, match="holds no samples"):
        open_source(empty, image_signature())
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="is not a readable .npy file"):
        open_source(objects, image_signature())
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="is not a readable .npy file"):
        open_source(garbage, image_signature())
    zero = tmp_path / "zero.npy"
    zero.write_bytes(b"")
    with pytest.raises(DataError, match="is not a readable .npy file"):
        open_source(zero, image_signature())


def test_npy_cannot_feed_a_multi_input_model(tmp_path, signature):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 8), np.int32))
    with pytest.raises(DataError, match=r"holds one array but the model has 2 inputs .*FILE.npz"):
        open_source(path, signature(("ids", (None, 8), "int32"), ("mask", (None, 8), "int32")))


@pytest.fixture
def bert_like(signature):
    # Inputs in TF's positional order (sorted names), which models/ reports.
    return signature(
        ("attention_mask", (None, 16), "int32"),
        ("input_ids", (None, 16), "int32"),
        ("token_type_ids", (None, 16), "int64"),
    )


def test_npz_keyed_by_input_name_feeds_a_multi_input_model(tmp_path, bert_like):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, size=(3, 16)).astype(np.int32)
    mask = np.ones((3, 16), np.int32)
    types = np.zeros((3, 16), np.int64)
    path = tmp_path / "bert.npz"
    np.savez(path, token_type_ids=types, input_ids=ids, attention_mask=mask, unused=np.zeros(3))
    source = open_source(path, bert_like)
    batches, sources, arrays = _all_rows(source, batch_size=2)
    assert list(batches[0].inputs) == ["attention_mask", "input_ids", "token_type_ids"]
    np.testing.assert_array_equal(arrays["input_ids"], ids)
    assert arrays["attention_mask"].dtype == np.int32 and arrays["token_type_ids"].dtype == np.int64
    assert sources == [f"{path}[{i}]" for i in range(3)]


def test_compressed_npz_works_too(tmp_path, bert_like):
    path = tmp_path / "bert.npz"
    np.savez_compressed(path, **{name: np.ones((2, 16), np.int32) for name in bert_like.input_names})
    assert open_source(path, bert_like).count() == 2


def test_npz_missing_an_input_name(tmp_path, bert_like):
    path = tmp_path / "partial.npz"
    np.savez(path, input_ids=np.zeros((2, 16), np.int32), token_type_ids=np.zeros((2, 16), np.int64))
    with pytest.raises(DataError) as error:
        open_source(path, bert_like)
    assert _one_line(error).startswith(
        f"{path} has no array for input 'attention_mask' (it has: input_ids, token_type_ids); save it with numpy.savez"
    )


def test_npz_arrays_must_have_the_same_number_of_rows(tmp_path, bert_like):
    path = tmp_path / "ragged.npz"
    np.savez(path, attention_mask=np.ones((2, 16), np.int32), input_ids=np.ones((3, 16), np.int32), token_type_ids=np.ones((3, 16), np.int64))
    with pytest.raises(DataError, match=r"different numbers of samples per input \(attention_mask: 2, input_ids: 3"):
        open_source(path, bert_like)


def test_npz_wrong_shape_names_the_array(tmp_path, bert_like):
    path = tmp_path / "short.npz"
    np.savez(path, attention_mask=np.ones((2, 8), np.int32), input_ids=np.ones((2, 16), np.int32), token_type_ids=np.ones((2, 16), np.int64))
    with pytest.raises(DataError, match=r"short.npz\['attention_mask'\] holds int32 of shape 2x8; input 'attention_mask' expects int32 of shape Nx16"):
        open_source(path, bert_like)


def test_npz_with_one_unnamed_array_feeds_a_single_input_model(tmp_path, image_signature):
    path = tmp_path / "one.npz"
    np.savez(path, np.zeros((2, 32, 32, 3), np.float32))
    assert open_source(path, image_signature()).count() == 2


def test_corrupt_npz(tmp_path, bert_like):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="is not a readable .npz file"):
        open_source(path, bert_like)


def test_explicit_mode_on_arrays_without_image_inputs(tmp_path, bert_like):
    path = tmp_path / "bert.npz"
    np.savez(path, **{name: np.ones((2, 16), np.int32) for name in bert_like.input_names})
    with pytest.raises(DataError, match="applies to float image inputs, and this model has none; use --preprocess=none"):
        open_source(path, bert_like, preprocess="tf")


# --------------------------------------------------------------------------- synthetic


def test_synthetic_float_images_follow_the_preprocess_range(image_signature):
    raw = next(open_source("synthetic", image_signature()).batches(8)).inputs["images"]
    assert raw.dtype == np.float32 and raw.min() >= 0 and raw.max() <= 255 and raw.max() > 200
    scaled = next(open_source("synthetic", image_signature(), model_hint="keras:MobileNetV2").batches(8)).inputs["images"]
    assert scaled.min() >= -1 and scaled.max() <= 1 and scaled.min() < -0.9
    caffe = open_source("synthetic", image_signature(), preprocess="caffe")
    assert caffe.preprocess == "caffe" and next(caffe.batches(8)).inputs["images"].min() < -100


def test_synthetic_integer_and_mask_inputs(bert_like, signature):
    source = open_source("synthetic:6", bert_like)
    _, sources, arrays = _all_rows(source, batch_size=4)
    assert sources == [f"synthetic[{i}]" for i in range(6)]
    ids, mask, types = arrays["input_ids"], arrays["attention_mask"], arrays["token_type_ids"]
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < 100 and len(np.unique(ids)) > 10
    assert set(np.unique(mask)) <= {0, 1} and (mask[:, 0] == 1).all()
    assert (np.diff(mask, axis=1) <= 0).all()  # 1s then 0s, like real padding masks
    assert types.dtype == np.int64 and set(np.unique(types)) <= {0, 1} and (np.diff(types, axis=1) >= 0).all()


def test_synthetic_other_dtypes(signature):
    model = signature(
        ("pixels", (None, 8, 8, 3), "uint8"),
        ("padding", (None, 5), "bool"),
        ("features", (None, 4), "float64"),
        ("counts", (None, 3), "int8"),
    )
    batch = next(open_source("synthetic", model).batches(16))
    assert batch.inputs["pixels"].dtype == np.uint8 and batch.inputs["pixels"].max() > 100
    assert batch.inputs["padding"].dtype == np.bool_ and batch.inputs["padding"][:, 0].all()
    features = batch.inputs["features"]
    assert features.dtype == np.float64 and features.min() >= -1 and features.max() < 1
    assert batch.inputs["counts"].dtype == np.int8 and batch.inputs["counts"].max() < 100


def test_synthetic_is_reproducible_by_seed(bert_like):
    def first(seed):
        return next(open_source("synthetic", bert_like, seed=seed).batches(4)).inputs["input_ids"]

    np.testing.assert_array_equal(first(3), first(3))
    assert not np.array_equal(first(3), first(4))


def test_synthetic_count(image_signature):
    assert open_source("synthetic", image_signature()).count() is None
    assert [len(b) for b in open_source("synthetic", image_signature()).batches(4, limit=10)] == [4, 4, 2]
    assert open_source("synthetic:5", image_signature()).count() == 5
    for bad in ("synthetic:0", "synthetic:many"):
        with pytest.raises(DataError, match="write 'synthetic' or 'synthetic:N'"):
            open_source(bad, image_signature())


def test_synthetic_dynamic_dims_need_input_shape(signature):
    dynamic = signature(("input_ids", (None, None), "int32"), ("input_mask", (None, None), "int32"))
    with pytest.raises(DataError, match=r"input 'input_ids' has unknown dims \?x\?; pass --input_shape") as error:
        open_source("synthetic", dynamic)
    _one_line(error)
    batch = next(open_source("synthetic", dynamic, input_shape="24").batches(2))
    assert batch.inputs["input_ids"].shape == (2, 24) and batch.inputs["input_mask"].shape == (2, 24)
    batch = next(open_source("synthetic", dynamic, input_shape="input_ids=12,input_mask=12").batches(2))
    assert batch.inputs["input_mask"].shape == (2, 12)
    images = signature(("images", (None, None, None, 3), "float32"))
    assert next(open_source("synthetic", images, input_shape="64x48").batches(1)).inputs["images"].shape == (1, 64, 48, 3)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_values_survive_memory_mapping_and_fortran_order(tmp_path, signature, save):
    # np.savez members are memory-mapped in place; compressed ones are read; both must match.
    grid = np.asfortranarray(np.arange(4 * 6, dtype=np.float32).reshape(4, 6))
    ids = np.arange(4 * 3, dtype=np.int64).reshape(4, 3)
    path = tmp_path / "arrays.npz"
    save(path, grid=grid, ids=ids)
    model = signature(("grid", (None, 6), "float32"), ("ids", (None, 3), "int64"))
    _, _, arrays = _all_rows(open_source(path, model), batch_size=3)
    np.testing.assert_array_equal(arrays["grid"], grid)
    np.testing.assert_array_equal(arrays["ids"], ids)
