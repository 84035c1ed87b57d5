"""caffe_pb2 against the field tables of the specs (caffe.md §1, caffeonspark.md §3), parsed here."""

import math
import re

import pytest
from google.protobuf.descriptor import FieldDescriptor as FD

from cos.proto import caffe_pb2

from conftest import SHARED

DOCS = SHARED / "docs"
SCALARS = {FD.TYPE_INT32: "int32", FD.TYPE_INT64: "int64", FD.TYPE_UINT32: "uint32",
           FD.TYPE_UINT64: "uint64", FD.TYPE_FLOAT: "float", FD.TYPE_DOUBLE: "double",
           FD.TYPE_BOOL: "bool", FD.TYPE_STRING: "string", FD.TYPE_BYTES: "bytes"}
PACKED = {("BlobShape", "dim"), ("BlobProto", "data"), ("BlobProto", "diff"),
          ("BlobProto", "double_data"), ("BlobProto", "double_diff")}


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _name(cell):
    m = re.match(r"`([\w.]+)`", cell)
    return m.group(1) if m else None


def caffe_tables():
    """{message: {number: (field, label, type, default)}} from caffe.md §1."""
    text = (DOCS / "caffe.md").read_text()
    section = text[text.index("## 1. Protobuf schema"):text.index("## 2. Net construction")]
    tables, message = {}, None
    for line in section.splitlines():
        heading = re.match(r"#### `(\w+)`", line)
        if heading:
            message = heading.group(1)
            continue
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = _cells(line)
        if cells[0] in ("#", "message"):
            if cells[0] == "message":
                message = None
            continue
        if message is None and len(cells) == 7:  # §1.4: | message | # | field | lbl | type | default | notes |
            message = _name(cells[0]) or message
            cells = cells[1:]
        if message in ("V1LayerParameter", "V0LayerParameter"):
            for part in (cells[0:4], cells[4:8]):
                if part[0]:
                    _add_legacy(tables.setdefault(message, {}), part)
            continue
        if message and cells[0].isdigit():
            tables.setdefault(message, {})[int(cells[0])] = (
                _name(cells[1]), cells[2], cells[3], cells[4])
    return tables


def _add_legacy(table, part):
    number, field, kind, default = part
    label = "rep" if kind.startswith("rep ") else "opt"
    table[int(number)] = (_name(field), label, kind.replace("rep ", ""), default)


def caffe_section_1_4():
    """§1.4 rows carry their message name in the first column (blank = same as above)."""
    text = (DOCS / "caffe.md").read_text()
    section = text[text.index("### 1.4"):text.index("### 1.5")]
    tables, message = {}, None
    for line in section.splitlines():
        cells = _cells(line) if line.startswith("|") else []
        if len(cells) != 7 or not cells[1].isdigit():
            continue
        message = _name(cells[0]) or message
        tables.setdefault(message, {})[int(cells[1])] = (
            _name(cells[2]), cells[3], cells[4], cells[5])
    return tables


def cos_tables():
    """caffeonspark.md §3: | field | number | type | [default |] meaning |."""
    text = (DOCS / "caffeonspark.md").read_text()
    section = text[text.index("## 3. Prototxt extensions"):text.index("### 3.4")]
    heads = {"3.1": "LayerParameter", "3.2": "MemoryDataParameter", "3.3": "CoSDataParameter"}
    tables, message = {}, None
    for line in section.splitlines():
        m = re.match(r"### (3\.\d)", line)
        if m:
            message = heads.get(m.group(1))
        if line.startswith("Nested message `CoSDataParameter.TopBlob`"):
            message = "CoSDataParameter.TopBlob"
        cells = _cells(line) if line.startswith("|") else []
        if message and len(cells) >= 4 and cells[1].isdigit():
            kind = cells[2].replace("`", "")
            label = "rep" if kind.startswith("repeated ") else "opt"
            default = cells[3] if len(cells) == 5 else ""
            tables.setdefault(message, {})[int(cells[1])] = (
                _name(cells[0]), label, kind.replace("repeated ", ""), default)
    return tables


ALL = {**caffe_tables(), **caffe_section_1_4()}
COS = cos_tables()


def _descriptor(message):
    desc = caffe_pb2.DESCRIPTOR.message_types_by_name[message.split(".")[0]]
    for part in message.split(".")[1:]:
        desc = desc.nested_types_by_name[part]
    return desc


def _type_name(field):
    if field.type in SCALARS:
        return SCALARS[field.type]
    target = field.message_type or field.enum_type
    return target.full_name.removeprefix("caffe.")


def _label(field):
    if field.is_repeated:
        return "rep"
    return "req" if field.is_required else "opt"


def _check_default(field, default, where):
    m = re.fullmatch(r"`(.*)`|\((.*)\)", default.strip())
    if not m or field.is_repeated or field.message_type:
        return
    written = (m.group(1) if m.group(1) is not None else m.group(2)).strip().strip('"')
    value = field.default_value
    if field.enum_type:
        assert field.enum_type.values_by_number[value].name == written, where
    elif field.type == FD.TYPE_BOOL:
        assert value == (written == "true"), where
    elif field.type == FD.TYPE_STRING:
        assert value == written, where
    elif field.type == FD.TYPE_BYTES:
        assert value == b"" and written == "empty", where
    elif field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        assert math.isclose(value, float(written), rel_tol=1e-6), where
    else:
        assert value == int(written), where


def _check(message, rows, with_defaults=True):
    desc = _descriptor(message)
    for number, (name, label, kind, default) in rows.items():
        where = f"{message}.{name} = {number}"
        field = desc.fields_by_number.get(number)
        assert field is not None, f"{where}: missing from caffe.proto"
        assert field.name == name, where
        if label:
            assert _label(field) == label, where
        # The CaffeOnSpark tables write nested types unqualified (TopBlob, DataType).
        assert _type_name(field) == kind or _type_name(field).endswith("." + kind), where
        if with_defaults:
            _check_default(field, default, where)


def test_tables_were_found():
    for message in ("LayerParameter", "SolverParameter", "BlobProto", "Datum",
                    "ConvolutionParameter", "PoolingParameter", "V1LayerParameter",
                    "V0LayerParameter", "NetParameter", "TransformationParameter"):
        assert len(ALL.get(message, {})) >= 3, message
    assert len(ALL["LayerParameter"]) == 60 and len(ALL["SolverParameter"]) == 42
    assert len(ALL["V1LayerParameter"]) == 43
    assert set(COS) == {"LayerParameter", "MemoryDataParameter", "CoSDataParameter",
                        "CoSDataParameter.TopBlob"}


@pytest.mark.parametrize("message", sorted(ALL))
def test_caffe_fields_match_spec(message):
    # Field names, numbers, labels, types and defaults of every table in caffe.md §1.
    _check(message, ALL[message])


@pytest.mark.parametrize("message", sorted(COS))
def test_caffe_on_spark_extensions_match_spec(message):
    _check(message, COS[message], with_defaults=False)


def test_cos_defaults():
    assert caffe_pb2.MemoryDataParameter().share_in_parallel is True
    assert caffe_pb2.CoSDataParameter().dataframe_format == "parquet"
    assert caffe_pb2.CoSDataParameter.TopBlob().sample_num_axes == 3
    names = caffe_pb2.CoSDataParameter.DataType.keys()
    assert names == ["STRING", "INT", "FLOAT", "INT_ARRAY", "FLOAT_ARRAY", "ENCODED_IMAGE",
                     "RAW_IMAGE", "ENCODED_IMAGE_WITH_DIM"]


def test_exactly_the_five_packed_fields_are_packed():
    packed = set()
    for desc in caffe_pb2.DESCRIPTOR.message_types_by_name.values():
        for nested in [desc, *desc.nested_types]:
            for field in nested.fields:
                if field.is_packed:
                    packed.add((nested.name, field.name))
    assert packed == PACKED
    assert not caffe_pb2.Datum.DESCRIPTOR.fields_by_name["float_data"].is_packed


def test_enum_values_match_spec():
    text = (DOCS / "caffe.md").read_text()
    section = text[text.index("## 1. Protobuf schema"):text.index("## 2. Net construction")]
    count = 0
    for m in re.finditer(r"- enum `([\w.]+)`: (.*)", section):
        enum = caffe_pb2.DESCRIPTOR.pool.FindEnumTypeByName("caffe." + m.group(1))
        expected = {n: int(v) for n, v in re.findall(r"`(\w+)`=(\d+)", m.group(2))}
        assert {v.name: v.number for v in enum.values} == expected, m.group(1)
        count += 1
    assert count >= 20
    assert caffe_pb2.Phase.Value("TRAIN") == 0 and caffe_pb2.Phase.Value("TEST") == 1
