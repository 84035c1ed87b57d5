"""Java serialization (java.io.ObjectOutputStream's stream protocol) for the SequenceFile keys
CaffeOnSpark wrote: scala.Tuple2 of two Strings (Binary2Sequence), scala.Tuple6 of (String,
String, Integer, Integer, Integer, Boolean) (LMDB2Sequence), and the deprecated
com.yahoo.ml.dl.caffe.Pair (public fields `first`, `second`).

The writer gives the bytes a JVM writes for these objects; the reader parses the part of the
grammar such streams use (class descriptors with their superclass chain, field descriptors,
handles and back-references, short and long strings, block-data annotations) and refuses
anything else with a one-line DataError.
"""

import struct

from ..errors import DataError

STREAM_HEADER = b"\xac\xed\x00\x05"  # STREAM_MAGIC, STREAM_VERSION
BASE_HANDLE = 0x7E0000

TC_NULL = 0x70
TC_REFERENCE = 0x71
TC_CLASSDESC = 0x72
TC_OBJECT = 0x73
TC_STRING = 0x74
TC_ENDBLOCKDATA = 0x78
TC_BLOCKDATA = 0x77
TC_BLOCKDATALONG = 0x7A
TC_LONGSTRING = 0x7C
TC_NAMES = {0x75: "TC_ARRAY", 0x76: "TC_CLASS", 0x79: "TC_RESET", 0x7B: "TC_EXCEPTION",
            0x7D: "TC_PROXYCLASSDESC", 0x7E: "TC_ENUM"}

SC_WRITE_METHOD = 0x01
SC_SERIALIZABLE = 0x02
SC_EXTERNALIZABLE = 0x04

OBJECT_TYPE = "Ljava/lang/Object;"

# serialVersionUIDs as the JVM reports them (ObjectStreamClass.lookup(...)), for the classes
# in pyspark 4's jars: scala-library 2.13.x and the JDK. Scala's tuples carry no explicit
# UID, so it changes between Scala versions: Scala 2.10 wrote 0xbc7daadf46211a99 for Tuple2
# (Akka 2.2's serialization compatibility tests pin those bytes). The reader accepts any UID.
TUPLE2_UID = 142951686315914362
TUPLE6_UID = -8509888996511846352
INTEGER_UID = 1360826667806852920
NUMBER_UID = -8742448824652078965
BOOLEAN_UID = -3665804199014368530
SCALA_2_10_TUPLE2_UID = struct.unpack(">q", bytes.fromhex("bc7daadf46211a99"))[0]

PAIR_CLASS = "com.yahoo.ml.dl.caffe.Pair"
BOXED = {"java.lang.Integer", "java.lang.Long", "java.lang.Short", "java.lang.Byte",
         "java.lang.Boolean", "java.lang.Double", "java.lang.Float", "java.lang.Character"}


# ---- modified UTF-8 (DataOutput.writeUTF) ----------------------------------------------

def encode_modified_utf8(value):
    """Java's modified UTF-8: UTF-16 code units, NUL as 2 bytes, surrogates as 3 bytes each."""
    units = struct.unpack(f">{len(value.encode('utf-16-be', 'surrogatepass')) // 2}H",
                          value.encode("utf-16-be", "surrogatepass"))
    out = bytearray()
    for unit in units:
        if 0 < unit < 0x80:
            out.append(unit)
        elif unit < 0x800:
            out += bytes([0xC0 | unit >> 6, 0x80 | unit & 0x3F])
        else:
            out += bytes([0xE0 | unit >> 12, 0x80 | unit >> 6 & 0x3F, 0x80 | unit & 0x3F])
    return bytes(out)


def decode_modified_utf8(data, where):
    units, at = [], 0
    try:
        while at < len(data):
            byte = data[at]
            if byte < 0x80:
                units.append(byte)
                at += 1
            elif byte >> 5 == 0b110:
                units.append((byte & 0x1F) << 6 | data[at + 1] & 0x3F)
                at += 2
            elif byte >> 4 == 0b1110:
                units.append((byte & 0x0F) << 12 | (data[at + 1] & 0x3F) << 6
                             | data[at + 2] & 0x3F)
                at += 3
            else:
                raise IndexError
    except IndexError:
        raise DataError(f"{where}: bad modified UTF-8 in a string at byte {at}") from None
    raw = struct.pack(f">{len(units)}H", *units)
    return raw.decode("utf-16-be", "surrogatepass")


# ---- writer -------------------------------------------------------------------------

class _Writer:
    """Builds one stream; `handles` maps the objects a JVM would share to their handle."""

    def __init__(self):
        self.out = bytearray(STREAM_HEADER)
        self.next_handle = 0
        self.handles = {}

    def new_handle(self, key=None):
        if key is not None:
            self.handles[key] = self.next_handle
        self.next_handle += 1

    def reference(self, key):
        """Write a back-reference if `key` was written before."""
        if key is None or key not in self.handles:
            return False
        self.out += struct.pack(">BI", TC_REFERENCE, BASE_HANDLE + self.handles[key])
        return True

    def string(self, value, key=None):
        if self.reference(key):
            return
        data = encode_modified_utf8(value)
        if len(data) <= 0xFFFF:
            self.out += struct.pack(">BH", TC_STRING, len(data)) + data
        else:
            self.out += struct.pack(">Bq", TC_LONGSTRING, len(data)) + data
        self.new_handle(key)

    def class_desc(self, name, uid, fields, parent=None):
        """fields: (typecode, name) pairs in the JVM's order; object fields are Object-typed."""
        if self.reference(("class", name)):
            return
        encoded = encode_modified_utf8(name)
        self.out += struct.pack(">BH", TC_CLASSDESC, len(encoded)) + encoded
        self.out += struct.pack(">q", uid)
        self.new_handle(("class", name))
        self.out += struct.pack(">BH", SC_SERIALIZABLE, len(fields))
        for typecode, field in fields:
            self.out += typecode.encode() + struct.pack(">H", len(field)) + field.encode()
            if typecode in "L[":
                # type names are interned in the JVM, so the second one is a reference
                self.string(OBJECT_TYPE, key=("type", OBJECT_TYPE))
        self.out.append(TC_ENDBLOCKDATA)  # no class annotations
        if parent is None:
            self.out.append(TC_NULL)
        else:
            self.class_desc(*parent)

    def value(self, value):
        if isinstance(value, bool):
            self.boolean(value)
        elif isinstance(value, int):
            self.integer(value)
        elif isinstance(value, str):
            self.string(value)  # each String is its own object, as from split()/toString
        else:
            raise TypeError(f"cannot Java-serialise {type(value).__name__}")

    def integer(self, value):
        if not -2 ** 31 <= value < 2 ** 31:
            raise ValueError(f"{value} does not fit a java.lang.Integer")
        # Integer.valueOf (Scala's boxing and py4j's) shares one object for -128..127
        key = ("int", value) if -128 <= value <= 127 else None
        if self.reference(key):
            return
        self.out.append(TC_OBJECT)
        self.class_desc("java.lang.Integer", INTEGER_UID, [("I", "value")],
                        ("java.lang.Number", NUMBER_UID, []))
        self.new_handle(key)
        self.out += struct.pack(">i", value)

    def boolean(self, value):
        key = ("bool", value)  # Boolean.TRUE / Boolean.FALSE
        if self.reference(key):
            return
        self.out.append(TC_OBJECT)
        self.class_desc("java.lang.Boolean", BOOLEAN_UID, [("Z", "value")])
        self.new_handle(key)
        self.out.append(1 if value else 0)

    def plain_object(self, name, uid, names, values):
        self.out.append(TC_OBJECT)
        # the JVM orders object fields by name; callers pass them sorted
        self.class_desc(name, uid, [("L", field) for field in names])
        self.new_handle()
        for value in values:
            self.value(value)
        return bytes(self.out)


def dump_object(class_name, uid, names, values):
    """The stream for a Serializable class with no superclass state whose fields `names`
    (sorted, all declared as Object) hold `values` (str, int as Integer, bool as Boolean)."""
    if list(names) != sorted(names) or len(names) != len(values):
        raise ValueError("field names must be sorted and match the values")
    return _Writer().plain_object(class_name, uid, names, values)


def dump_tuple2(id, label, uid=TUPLE2_UID):
    """The bytes of ObjectOutputStream.writeObject(scala.Tuple2(id, label)), two Strings."""
    return dump_object("scala.Tuple2", uid, ["_1", "_2"], [str(id), str(label)])


def dump_tuple6(id, label, channels, height, width, encoded, uid=TUPLE6_UID):
    """The bytes of writeObject of scala.Tuple6(id: String, label: String, channels: Integer,
    height: Integer, width: Integer, encoded: Boolean), boxed as Scala boxes them."""
    return dump_object("scala.Tuple6", uid, ["_1", "_2", "_3", "_4", "_5", "_6"],
                       [str(id), str(label), int(channels), int(height), int(width),
                        bool(encoded)])


# ---- reader -------------------------------------------------------------------------

class JavaObject:
    """A deserialised object: its class name and field values (all classes in the chain)."""

    def __init__(self, class_name):
        self.class_name = class_name
        self.fields = {}

    def __repr__(self):
        return f"JavaObject({self.class_name}, {self.fields})"


class _ClassDesc:
    def __init__(self, name, uid, flags, fields, parent):
        self.name = name
        self.uid = uid
        self.flags = flags
        self.fields = fields  # [(typecode, name)]
        self.parent = parent

    def chain(self):
        """Superclass first, as the class data is laid out."""
        return (self.parent.chain() if self.parent else []) + [self]


_PRIMITIVES = {"B": ">b", "C": ">H", "D": ">d", "F": ">f", "I": ">i", "J": ">q", "S": ">h",
               "Z": ">?"}


class _Reader:
    def __init__(self, data, where):
        self.data = bytes(data)
        self.where = where
        self.at = 0
        self.handles = []

    def fail(self, what):
        raise DataError(f"{self.where}: {what} at byte {self.at}")

    def take(self, size):
        if size < 0:
            self.fail(f"negative length {size}")
        if self.at + size > len(self.data):
            self.fail(f"truncated Java-serialized data: {size} more bytes needed")
        chunk = self.data[self.at:self.at + size]
        self.at += size
        return chunk

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def utf(self, long=False):
        size = self.unpack(">q" if long else ">H")
        return decode_modified_utf8(self.take(size), self.where)

    def handle(self, value):
        self.handles.append(value)
        return value

    def referenced(self):
        index = self.unpack(">I") - BASE_HANDLE
        if not 0 <= index < len(self.handles):
            self.fail(f"back-reference to unknown handle 0x{index + BASE_HANDLE:x}")
        return self.handles[index]

    def content(self):
        """One object, string, null or back-reference."""
        tc = self.unpack(">B")
        if tc == TC_NULL:
            return None
        if tc == TC_REFERENCE:
            value = self.referenced()
            if isinstance(value, _ClassDesc):
                self.fail("back-reference to a class descriptor where an object was expected")
            return value
        if tc in (TC_STRING, TC_LONGSTRING):
            return self.handle(self.utf(long=tc == TC_LONGSTRING))
        if tc == TC_OBJECT:
            return self.new_object()
        self.at -= 1
        self.fail(f"unsupported Java serialization element "
                  f"{TC_NAMES.get(tc, 'TC_CLASSDESC' if tc == TC_CLASSDESC else hex(tc))}")

    def class_desc(self):
        tc = self.unpack(">B")
        if tc == TC_NULL:
            return None
        if tc == TC_REFERENCE:
            desc = self.referenced()
            if not isinstance(desc, _ClassDesc):
                self.fail("back-reference where a class descriptor was expected")
            return desc
        if tc != TC_CLASSDESC:
            self.at -= 1
            self.fail(f"expected a class descriptor, found "
                      f"{TC_NAMES.get(tc, hex(tc))}")
        name = self.utf()
        uid = self.unpack(">q")
        desc = self.handle(_ClassDesc(name, uid, 0, [], None))
        desc.flags = self.unpack(">B")
        for _ in range(self.unpack(">H")):
            typecode = chr(self.unpack(">B"))
            field = self.utf()
            if typecode in "L[":
                type_name = self.content()
                if not isinstance(type_name, str):
                    self.fail(f"field {name}.{field} has no type name")
            elif typecode not in _PRIMITIVES:
                self.fail(f"field {name}.{field} has unknown type code {typecode!r}")
            desc.fields.append((typecode, field))
        self.annotations()
        desc.parent = self.class_desc()
        seen, level = {id(desc)}, desc.parent
        while level is not None:  # a corrupt back-reference could make the chain loop
            if id(level) in seen:
                self.fail(f"class {name} is its own superclass")
            seen.add(id(level))
            level = level.parent
        return desc

    def annotations(self):
        """Skip block data and objects up to TC_ENDBLOCKDATA."""
        while True:
            tc = self.data[self.at] if self.at < len(self.data) else None
            if tc == TC_ENDBLOCKDATA:
                self.at += 1
                return
            if tc == TC_BLOCKDATA:
                self.at += 1
                self.take(self.unpack(">B"))
            elif tc == TC_BLOCKDATALONG:
                self.at += 1
                self.take(self.unpack(">i"))
            else:
                self.content()

    def new_object(self):
        desc = self.class_desc()
        if desc is None:
            self.fail("object without a class descriptor")
        obj = self.handle(JavaObject(desc.name))
        for level in desc.chain():
            if level.flags & SC_EXTERNALIZABLE or not level.flags & SC_SERIALIZABLE:
                self.fail(f"class {level.name} is not plainly Serializable "
                          f"(flags 0x{level.flags:02x})")
            for typecode, field in level.fields:
                if typecode in _PRIMITIVES:
                    value = self.unpack(_PRIMITIVES[typecode])
                    obj.fields[field] = chr(value) if typecode == "C" else value
                else:
                    obj.fields[field] = self.content()
            if level.flags & SC_WRITE_METHOD:
                self.annotations()
        return obj


def load(data, where="Java-serialized data"):
    """Parse one serialised object into str / None / JavaObject (fields parsed recursively)."""
    reader = _Reader(data, where)
    if reader.take(4) != STREAM_HEADER:
        reader.at = 0
        reader.fail(f"not a Java serialization stream (starts with {bytes(data[:4]).hex()}, "
                    f"expected {STREAM_HEADER.hex()})")
    return reader.content()


def _plain(value):
    """Boxed java.lang values -> Python int/bool/float/str; anything else unchanged."""
    if isinstance(value, JavaObject) and value.class_name in BOXED:
        return value.fields.get("value")
    return value


_JAVA_NAMES = {str: "String", int: "Integer", bool: "Boolean"}


def _describe(value):
    if isinstance(value, JavaObject):
        return value.class_name
    if value is None:
        return "null"
    if not isinstance(value, str):
        return type(value).__name__
    shown = value if len(value) <= 40 else value[:40] + "..."
    return f"java.lang.String {shown!r}"


def load_key(data, where="key"):
    """A SequenceFile key -> (id, label) for scala.Tuple2 / com.yahoo.ml.dl.caffe.Pair, or
    (id, label, channels, height, width, encoded) for scala.Tuple6. Anything else, or a
    tuple of other types, -> DataError naming `where` and what was found."""
    obj = load(data, where)
    if not isinstance(obj, JavaObject):
        raise DataError(f"{where}: key is a {_describe(obj)}, expected scala.Tuple2, "
                        f"scala.Tuple6 or {PAIR_CLASS}")
    if obj.class_name == "scala.Tuple2":
        names, types = ("_1", "_2"), (str, str)
    elif obj.class_name == PAIR_CLASS:
        names, types = ("first", "second"), (str, str)
    elif obj.class_name == "scala.Tuple6":
        names, types = ("_1", "_2", "_3", "_4", "_5", "_6"), (str, str, int, int, int, bool)
    else:
        raise DataError(f"{where}: key is a {obj.class_name}, expected scala.Tuple2, "
                        f"scala.Tuple6 or {PAIR_CLASS}")
    values = []
    for name, kind in zip(names, types):
        raw = obj.fields.get(name)
        value = _plain(raw)
        if type(value) is not kind:  # bool is an int subclass: compare exactly
            raise DataError(f"{where}: {obj.class_name} field {name} is a {_describe(raw)}, "
                            f"expected {_JAVA_NAMES[kind]}")
        values.append(value)
    return tuple(values)
