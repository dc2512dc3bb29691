"""The one shape parser and formatter: 'x'-joined dims, '?' for unknown ones."""

import pytest

from tftrt_toolkit.data.shapes import format_shape, parse_shape, parse_shape_list
from tftrt_toolkit.errors import ConfigError, DataError


def test_parse_shape_reads_x_joined_dims_and_int_sequences():
    assert parse_shape("1x224x224x3") == (1, 224, 224, 3)
    assert parse_shape(" 224X224 ") == (224, 224)
    assert parse_shape([8, 128]) == (8, 128)


@pytest.mark.parametrize("text", ["224x", "1xAx3", "", "0x3", "-1x3", "2.5x3"])
def test_parse_shape_refuses_what_is_not_a_shape(text):
    with pytest.raises(DataError, match=r"input_shape .*(is not a shape|positive dims)"):
        parse_shape(text, what="input_shape")


def test_parse_shape_raises_the_error_type_the_caller_names():
    # A config option's shapes are config mistakes (exit 2), input shapes data mistakes (exit 4).
    with pytest.raises(ConfigError, match=r"--build_shapes entry '1xAx3' is not a shape; .*1x224x224x3"):
        parse_shape_list("1xAx3", what="--build_shapes entry", error=ConfigError)


def test_parse_shape_list_splits_on_commas_and_spaces():
    assert parse_shape_list("1x224x224x3, 8x224x224x3") == ((1, 224, 224, 3), (8, 224, 224, 3))
    assert parse_shape_list("1,8 16") == ((1,), (8,), (16,))
    assert parse_shape_list(" ") == ()


def test_format_shape_writes_what_parse_shape_reads():
    assert format_shape((None, 224, None, 3)) == "?x224x?x3"
    assert format_shape((None, 10), batch="N") == "Nx10"
    assert format_shape((4, None), batch="N") == "4x?"
    assert format_shape(()) == "scalar"
    assert format_shape(None) == "(unknown rank)"
    for shape in [(1, 224, 224, 3), (7,)]:
        assert parse_shape(format_shape(shape)) == shape
