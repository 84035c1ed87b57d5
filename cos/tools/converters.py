"""Data converters: the original's Binary2Sequence, Binary2DataFrame, LMDB2Sequence,
LMDB2DataFrame and CocoDataSetConverter (spec section 10) and Caffe's convert_imageset, as
plain functions.

Unlike the original, a bad label line or an unreadable image stops the conversion with one
line naming the label file and line number (the original logged it and wrote null rows).
"""

import contextlib
import logging
import os
import random
import re
import shutil
import sys

import numpy as np

from ..errors import CosError, DataError
from ..proto import caffe_pb2, paths

log = logging.getLogger("cos.tools")

COMMIT_EVERY = 1000  # convert_imageset commits (and reports) every 1000 records, as Caffe


# ---- label files ------------------------------------------------------------------

def label_lines(label_file, fields, usage):
    """[(where, [field, ...])] for every non-blank line; where = 'file:line'.

    A line with another number of space-separated fields -> DataError naming file:line."""
    text = _read_text(label_file)
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{label_file}:{number}"
        if len(parts) != fields:
            raise DataError(f"{where}: expected '{usage}', got {line.strip()!r}")
        rows.append((where, parts))
    if not rows:
        raise DataError(f"{label_file}: lists no images")
    return rows


def int_label(text, where):
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{where}: label {text!r} is not an integer") from None


def _read_text(uri):
    try:
        return paths.read_text(uri)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{uri}: cannot read ({_reason(err)})") from None


def image_path(image_root, name):
    """imageRoot + "/" + name, as the original joins them (works for paths and URIs)."""
    return name if not image_root else str(image_root).rstrip("/") + "/" + name


def read_image_bytes(path, where):
    try:
        return paths.read_bytes(path)
    except OSError as err:
        raise DataError(f"{where}: cannot read image {path} ({_reason(err)})") from None


def check_images_exist(image_root, rows):
    """Fail on the first listed image that is missing, before any output is written."""
    for where, parts in rows:
        path = image_path(image_root, parts[0])
        if paths.is_local(path):
            local = paths.local_path(path)
            if not os.path.isfile(local):
                why = "is not a file" if os.path.exists(local) else "no such file"
                raise DataError(f"{where}: cannot read image {path} ({why})")
        elif not paths.exists(path):
            raise DataError(f"{where}: cannot read image {path} (no such file)")


def _reason(err):
    return getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0]


# ---- output folders ---------------------------------------------------------------

def new_output(output):
    """Refuse an existing output, as Spark's writers do."""
    if paths.exists(output):
        raise CosError(f"{output}: output already exists (remove it or choose another -output)")


@contextlib.contextmanager
def output_folder(output):
    """Create the output folder; on failure remove what was written (local paths)."""
    new_output(output)
    paths.makedirs(output)
    try:
        yield
    except BaseException:
        if paths.is_local(output):
            shutil.rmtree(paths.local_path(output), ignore_errors=True)
        raise
    paths.write_bytes_atomic(_child(output, "_SUCCESS"), b"")


def _child(folder, name):
    return str(folder).rstrip("/") + "/" + name


# ---- SequenceFiles ---------------------------------------------------------------

def binary2sequence(image_root, label_file, output):
    """Images listed as '<file name> <label>' -> SequenceFile folder `output` (part-00000).

    Key: Java-serialized Tuple2(file name, label); value: the image file's bytes."""
    from ..data.javaser import dump_tuple2
    from ..data.seqfile import write_sequence_file
    with hadoop_session(image_root, label_file, output):
        rows = label_lines(label_file, 2, "<file name> <label>")
        for where, (_, label) in rows:
            int_label(label, where)
        check_images_exist(image_root, rows)

        def pairs():
            for where, (name, label) in rows:
                path = image_path(image_root, name)
                yield dump_tuple2(name, label), read_image_bytes(path, where)

        with output_folder(output):
            write_sequence_file(_child(output, "part-00000"), pairs())
    return len(rows)


def lmdb2sequence(lmdb, output, partitions=1):
    """A Caffe LMDB -> SequenceFile folder with one part file per LMDB partition.

    Key: Java-serialized Tuple6(id, label, channels, height, width, encoded); value: the
    pixels interleaved HWC (or the encoded image bytes)."""
    from ..data.javaser import dump_tuple6
    from ..data.seqfile import write_sequence_file
    source = lmdb_source(lmdb, partitions)
    parts = source.partitions()
    counted = [0]

    def pairs(part):
        for sample in source.iter_partition(part):
            counted[0] += 1
            yield dump_tuple6(*sample[:6]), bytes(sample[6])

    with hadoop_session(output), output_folder(output):
        for index, part in enumerate(parts):
            write_sequence_file(_child(output, f"part-{index:05d}"), pairs(part))
    return counted[0]


def lmdb_source(lmdb, partitions):
    """The LMDB source over `lmdb`, split into `partitions` key ranges."""
    from ..data.sources.lmdb_source import LMDBSource
    if int(partitions) < 1:
        raise CosError(f"-lmdb_partitions: must be at least 1, got {partitions}")
    if not paths.is_local(lmdb):
        raise DataError(f"{lmdb}: an LMDB must be a local directory (plain path or file:)")
    if not os.path.isdir(paths.local_path(lmdb)):
        raise DataError(f"{lmdb}: LMDB directory not found")
    layer = caffe_pb2.LayerParameter(name="lmdb", type="MemoryData",
                                     source_class="com.yahoo.ml.caffe.LMDB")
    layer.memory_data_param.source = str(lmdb)
    layer.memory_data_param.batch_size = 1  # partitions are cut by record, not by batch
    return LMDBSource(layer, False, partitions=int(partitions))


# ---- DataFrames -------------------------------------------------------------------

def binary2dataframe(image_root, label_file, output, output_format="json"):
    """Images listed as '<file name> <label> <id>' -> DataFrame (SampleID, label int, data)."""
    with hadoop_session(image_root, label_file, output):
        rows = label_lines(label_file, 3, "<file name> <label> <id>")
        labels = [int_label(parts[1], where) for where, parts in rows]
        check_images_exist(image_root, rows)
        new_output(output)
        records = [(parts[2], label, read_image_bytes(image_path(image_root, parts[0]), where))
                   for (where, parts), label in zip(rows, labels)]
        with spark_session() as spark:
            df = spark.createDataFrame(records, _schema([("SampleID", "string", False),
                                                         ("label", "int", False),
                                                         ("data", "binary", False)]))
            save_dataframe(df, output, output_format)
    return len(records)


LMDB_COLUMNS = [("id", "string", True), ("label", "string", False), ("channels", "int", True),
                ("height", "int", True), ("width", "int", True), ("encoded", "boolean", True),
                ("data", "binary", False)]


def lmdb2dataframe(lmdb, output, partitions=1, output_format="json"):
    """A Caffe LMDB -> DataFrame in the schema ImageDataFrame reads (pixels HWC)."""
    source = lmdb_source(lmdb, partitions)
    parts = source.partitions()
    with hadoop_session(output):
        new_output(output)
    with spark_session() as spark:
        rdd = source.make_rdd(spark.sparkContext)
        df = spark.createDataFrame(rdd, _schema(LMDB_COLUMNS))
        save_dataframe(df, output, output_format)
    return sum(count for _, count in parts)


def save_dataframe(df, output, output_format):
    target = paths.absolute(output) if paths.scheme(output) == "file" else str(output)
    try:
        df.write.format(output_format).save(target)
    except Exception as err:  # py4j/Spark errors: keep the first line of Spark's message
        java = getattr(err, "java_exception", None)
        reason = _reason(err) if java is None else _reason(Exception(java.toString()))
        raise CosError(f"{output}: cannot write the {output_format} DataFrame "
                       f"({reason})") from None


def _schema(columns):
    from pyspark.sql import types as T
    kinds = {"string": T.StringType, "int": T.IntegerType, "boolean": T.BooleanType,
             "binary": T.BinaryType, "long": T.LongType}
    return T.StructType([T.StructField(name, kinds[kind](), nullable)
                         for name, kind, nullable in columns])


def hadoop_session(*uris):
    """A Spark session when a path needs Hadoop's FileSystem (hdfs://...), else nothing."""
    if all(paths.is_local(uri) for uri in uris):
        return contextlib.nullcontext()
    return spark_session()


@contextlib.contextmanager
def spark_session():
    """The running SparkSession (spark-submit's, or a caller's), else a small local one that
    is stopped afterwards."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession
    if SparkContext._active_spark_context is not None:
        yield SparkSession.builder.getOrCreate()
        return
    SparkContext._ensure_initialized()  # joins spark-submit's JVM, so --master is seen
    conf = SparkConf()
    conf.setIfMissing("spark.master", "local[1]")
    conf.setIfMissing("spark.ui.enabled", "false")
    conf.setIfMissing("spark.ui.showConsoleProgress", "false")
    conf.setIfMissing("spark.sql.shuffle.partitions", "1")
    spark = SparkSession.builder.appName("cos-tools").config(conf=conf).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


# ---- convert_imageset -------------------------------------------------------------

def convert_imageset(root, listfile, db, gray=False, resize_height=0, resize_width=0,
                     shuffle=False, encoded=False, encode_type="", check_size=False,
                     backend="lmdb", seed=0):
    """Caffe's convert_imageset: images listed as '<path> <label>' -> an LMDB of Datums.

    Keys are '%08d_<path>' in list order (after shuffling with `seed`); values are raw
    BGR (or gray) C×H×W Datums, or encoded ones with -encoded/-encode_type."""
    if backend != "lmdb":
        raise CosError(f"-backend {backend}: only lmdb is supported")
    root, db = paths.local_path(root), paths.local_path(db)
    entries = imageset_lines(listfile)
    if shuffle:
        random.Random(seed).shuffle(entries)
    if os.path.exists(db):
        raise CosError(f"{db}: already exists (remove it or choose another DB path)")
    log.info("A total of %d images.", len(entries))
    records = imageset_records(root, entries, not gray, int(resize_height), int(resize_width),
                               encode_type or ("auto" if encoded else ""), check_size)
    count = write_lmdb(db, records)
    log.info("Processed %d files.", count)
    return count


def imageset_lines(listfile):
    """[(where, path, label)]: the label follows the last space, as in Caffe."""
    entries = []
    for number, line in enumerate(_read_text(listfile).splitlines(), 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        where = f"{listfile}:{number}"
        path, _, label = line.rpartition(" ")
        if not path:
            raise DataError(f"{where}: expected '<path> <label>', got {line!r}")
        entries.append((where, path, int_label(label, where)))
    if not entries:
        raise DataError(f"{listfile}: lists no images")
    return entries


def imageset_records(root, entries, color, height, width, encoding, check_size):
    """Yield (key, serialized Datum) for each list entry."""
    first_shape = None
    for index, (where, name, label) in enumerate(entries):
        path = os.path.join(root, name) if root else name
        datum, shape = image_datum(path, label, color, height, width, encoding, where)
        if check_size:
            if first_shape is None:
                first_shape = shape
            elif shape != first_shape:
                raise DataError(f"{where}: {name} is {_dims(shape)}, the first image was "
                                f"{_dims(first_shape)} (-check_size)")
        yield f"{index:08d}_{name}".encode(), datum.SerializeToString()


def image_datum(path, label, color, height, width, encoding, where):
    """One image file -> (Datum, decoded C,H,W), following Caffe's ReadImageToDatum."""
    from ..proto.datum import decode_image, encode_image
    raw = read_image_bytes(path, where)
    pixels = decode_image(raw, color, where=f"{where}: {path}")
    if height > 0 and width > 0:
        from ..data.images import resize_bilinear  # cv::resize INTER_LINEAR, as Caffe
        pixels = resize_bilinear(pixels, height, width)
    shape = (pixels.shape[2], pixels.shape[0], pixels.shape[1])
    if encoding:
        fmt = _extension(path) if encoding == "auto" else encoding.lower()
        if not height and not width and _same_format(_extension(path), fmt):
            data = raw  # the file as it is, like Caffe's ReadFileToDatum
        elif fmt in ("jpg", "jpeg", "png"):
            data = encode_image(pixels, fmt)
        else:
            raise DataError(f"{where}: cannot encode {path} as {fmt!r} (use png or jpg)")
        return caffe_pb2.Datum(data=data, label=label, encoded=True), shape
    datum = caffe_pb2.Datum(channels=shape[0], height=shape[1], width=shape[2],
                            data=pixels.transpose(2, 0, 1).tobytes(), label=label)
    return datum, shape


def _extension(path):
    return path.rpartition(".")[2].lower() if "." in os.path.basename(path) else ""


def _same_format(ext, fmt):
    return ext == fmt or (fmt == "jpg" and ext == "jpeg")


def _dims(shape):
    return "x".join(str(d) for d in shape)


def write_lmdb(db, records):
    """Write (key, value) records into a new LMDB at `db`: built beside it, then renamed."""
    import lmdb
    tmp = db.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    env = lmdb.open(tmp, map_size=1 << 28, subdir=True)
    count, batch = 0, []
    try:
        for key, value in records:
            batch.append((key, value))
            if len(batch) == COMMIT_EVERY:
                _commit(env, batch)
                count += len(batch)
                batch = []
                log.info("Processed %d files.", count)
        _commit(env, batch)
        count += len(batch)
        env.close()
    except BaseException:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, db)
    return count


def _commit(env, batch):
    """Put one batch in one transaction, doubling the map size when it is full."""
    import lmdb
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in batch:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)


# ---- COCO captions (spec 10.5) ---------------------------------------------------------

UNKNOWN_TOKEN = "UNK"
START_END_ID = 0  # starts input_sentence and ends target_sentence
UNKNOWN_ID = 1  # the original's id for out-of-vocabulary words (also the most frequent word's)
NO_TOKEN = -1  # fills the sentence arrays past the caption
_WORDS = re.compile(r"(\w+|\W+)", re.ASCII)  # Java's \w is ASCII-only


def sentence_words(sentence):
    """Lower-cased runs of word or non-word characters, blanks dropped, a final '.' removed."""
    words = [w.strip().lower() for w in _WORDS.findall(sentence.strip()) if w.strip()]
    return words[:-1] if words and words[-1] == "." else words


def coco_image_captions(caption_file):
    """Rows (id, height, width, file, url, caption): one per caption (id = the caption's id,
    url = flickr_url), or, without annotations, one per image (id = the image's, url =
    coco_url, no caption). Returns (rows, has_captions)."""
    import json
    try:
        coco = json.loads(_read_text(caption_file))
    except ValueError as err:
        raise DataError(f"{caption_file}: not a JSON document ({err})") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise DataError(f"{caption_file}: no 'images' list (not a COCO caption file)")
    images = {}
    has_captions = "annotations" in coco
    url_key = "flickr_url" if has_captions else "coco_url"
    for index, image in enumerate(coco["images"]):
        where = f"{caption_file}: images[{index}]"
        images[_field(image, "id", where)] = (
            int(_field(image, "height", where)), int(_field(image, "width", where)),
            _field(image, "file_name", where), image.get(url_key))
    if not has_captions:
        return [(image_id,) + info for image_id, info in images.items()], False
    rows = []
    for index, note in enumerate(coco["annotations"] or []):
        where = f"{caption_file}: annotations[{index}]"
        image_id = _field(note, "image_id", where)
        if image_id in images:  # an inner join, as the original's
            rows.append((_field(note, "id", where),) + images[image_id]
                        + (str(_field(note, "caption", where)),))
    return rows, True


def _field(record, name, where):
    if not isinstance(record, dict) or record.get(name) is None:
        raise DataError(f"{where}: no '{name}'")
    return record[name]


def build_vocabulary(captions, vocab_size=-1):
    """['UNK', most frequent word, ...]: the top `vocab_size` words (all if <= 0); equal
    counts are ordered alphabetically so the file is reproducible."""
    from collections import Counter
    counts = Counter(word for caption in captions for word in sentence_words(caption))
    words = sorted(counts, key=lambda w: (-counts[w], w))
    if vocab_size > 0:
        words = words[:vocab_size]
    return [UNKNOWN_TOKEN] + words


def save_vocabulary(words, folder):
    """A text-file folder as Spark's saveAsTextFile writes it: part-00000 and _SUCCESS."""
    with output_folder(folder):
        paths.write_bytes_atomic(_child(folder, "part-00000"),
                                 "".join(w + "\n" for w in words).encode("utf-8"))


def load_vocabulary(folder):
    """The words of a vocabulary folder (part files in order) or file; index = line number."""
    if paths.is_local(folder) and os.path.isdir(paths.local_path(folder)):
        local = paths.local_path(folder)
        names = sorted(n for n in os.listdir(local) if n.startswith("part-"))
        text = "".join(_read_text(os.path.join(local, n)) for n in names)
    else:
        text = _read_text(folder)
    return [line for line in text.splitlines() if line]


def caption_embedding(caption, word_ids, caption_length):
    """(input_sentence, cont_sentence, target_sentence), each `caption_length` ints."""
    words = sentence_words(caption)
    length = len(words) if len(words) < caption_length else caption_length - 1
    inputs, cont, target = ([NO_TOKEN] * caption_length for _ in range(3))
    inputs[0], cont[0] = START_END_ID, 0
    for i in range(length):
        embedding = word_ids.get(words[i], UNKNOWN_ID)
        inputs[i + 1], cont[i + 1], target[i] = embedding, 1, embedding
    target[length] = START_END_ID
    return inputs, cont, target


def embedding_caption(embedding, words):
    """Word ids back to a caption: START/END and NO_TOKEN skipped, words space-joined."""
    return " ".join(words[i] for i in embedding if i not in (START_END_ID, NO_TOKEN))


def coco_dataset_converter(image_root, caption_file, output, image_caption_dir="",
                           vocab_dir="", embedding_dir="", vocab_size=-1, caption_length=20,
                           output_format="json"):
    """CocoDataSetConverter: COCO caption JSON + images -> the image/caption DataFrame (JSON,
    if `image_caption_dir`), the vocabulary folder and the embedding DataFrame. The
    sub-directories are joined to `output` with '/'. Returns the embedding row count."""
    if caption_length < 2:
        raise CosError(f"-captionLength: must be at least 2, got {caption_length}")
    with hadoop_session(image_root, caption_file, output):
        rows, has_captions = coco_image_captions(caption_file)
        if has_captions and not vocab_dir:
            raise CosError("-vocabDir: needed when the caption file has annotations")
        if not embedding_dir and (image_caption_dir or has_captions):
            raise CosError("-embeddingDFDir: needed beside -imageCaptionDFDir and -vocabDir")
        image_caption_out = _child(output, image_caption_dir) if image_caption_dir else None
        embedding_out = _child(output, embedding_dir) if embedding_dir else str(output)
        for target in (image_caption_out, embedding_out):
            if target:
                new_output(target)
        words = vocab_out = None
        if has_captions:  # an existing vocabulary is reused, as the original does
            vocab_out = _child(output, vocab_dir)
            words = load_vocabulary(vocab_out) if paths.exists(vocab_out) \
                else build_vocabulary([r[5] for r in rows], vocab_size)
        word_ids = {w: i for i, w in enumerate(words)} if words else None
        embedded = [_embedding_row(image_root, caption_file, row, word_ids, caption_length)
                    for row in rows]
        if vocab_out and not paths.exists(vocab_out):
            save_vocabulary(words, vocab_out)
        with spark_session() as spark:
            if image_caption_out:
                save_dataframe(spark.createDataFrame(rows, _caption_schema(has_captions)),
                               image_caption_out, "json")
            save_dataframe(spark.createDataFrame(embedded, _embedding_schema(has_captions)),
                           embedding_out, output_format)
    return len(embedded)


def _caption_schema(has_captions):
    columns = [("id", "long", True), ("height", "int", True), ("width", "int", True),
               ("file", "string", True), ("url", "string", True)]
    return _schema(columns + ([("caption", "string", True)] if has_captions else []))


def _embedding_row(image_root, caption_file, row, word_ids, caption_length):
    row_id, height, width, name = row[:4]
    where = f"{caption_file}: id {row_id}"
    data = read_image_bytes(image_path(image_root, name), where)
    image = (height, width, np.frombuffer(data, np.int8).tolist())  # Spark's array<byte>
    out = (str(row_id), image, 0)
    if word_ids is not None:
        out += caption_embedding(row[5], word_ids, caption_length)
    return out


def _embedding_schema(has_captions):
    from pyspark.sql import types as T
    image = T.StructType([T.StructField("height", T.IntegerType()),
                          T.StructField("width", T.IntegerType()),
                          T.StructField("image", T.ArrayType(T.ByteType()))])
    fields = [T.StructField("id", T.StringType()), T.StructField("data", image),
              T.StructField("label", T.IntegerType())]
    if has_captions:
        fields += [T.StructField(name, T.ArrayType(T.IntegerType()))
                   for name in ("input_sentence", "cont_sentence", "target_sentence")]
    return T.StructType(fields)
