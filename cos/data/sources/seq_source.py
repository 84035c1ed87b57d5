"""SeqImageDataSource: a Hadoop SequenceFile<BytesWritable, BytesWritable> of images -> sample
tuples (id, label, channels, height, width, encoded, data) (spec 4.4).

Keys are Java-serialised: scala.Tuple2 / com.yahoo.ml.dl.caffe.Pair (id, label) for encoded
image files (Binary2Sequence), scala.Tuple6 (id, label, channels, height, width, encoded)
for raw HWC pixels or images of known size (LMDB2Sequence). Values are the image bytes.
"""

import os

from ...errors import DataError
from ...proto import paths
from .. import javaser, seqfile
from .base import ImageSource

BYTES_WRITABLE = seqfile.BYTES_WRITABLE


def key_sample(key, value, where):
    """One (key bytes, value bytes) record -> the 7-tuple sample; a key that is not one of the
    supported objects -> DataError naming `where` (path and record)."""
    fields = javaser.load_key(bytes(key), where)
    if len(fields) == 2:  # Tuple2 / Pair: an encoded image whose size the decoder finds
        fields = fields + (1, 0, 0, True)
    return fields + (bytes(value),)


def _split_samples(where):
    """A mapPartitionsWithIndex function naming the split and record in its errors."""
    def convert(split, records):
        for index, (key, value) in enumerate(records):
            yield key_sample(key, value, f"{where} (split {split}, record {index})")
    return convert


def local_files(path):
    """The SequenceFiles at a local path: the file itself, or a directory's visible files
    (Hadoop skips names starting with '_' or '.', e.g. _SUCCESS and .crc), sorted."""
    local = paths.local_path(path)
    if os.path.isfile(local):
        return [local]
    if not os.path.isdir(local):
        raise DataError(f"{path}: SequenceFile or directory not found")
    files = [os.path.join(local, name) for name in sorted(os.listdir(local))
             if not name.startswith(("_", ".")) and os.path.isfile(os.path.join(local, name))]
    if not files:
        raise DataError(f"{path}: directory has no SequenceFiles")
    return files


class SeqImageDataSource(ImageSource):
    """A MemoryData layer whose `source` is a SequenceFile (or a directory of part files)."""

    def make_rdd(self, sc):
        """Read through Hadoop (file:, hdfs://, directories), at least cluster_size splits."""
        source = paths.absolute(self.path)
        rdd = sc.sequenceFile(source, BYTES_WRITABLE, BYTES_WRITABLE,
                              minSplits=self.cluster_size)
        return rdd.mapPartitionsWithIndex(_split_samples(source))

    def iter_local(self):
        """All samples, file by file, without Spark (plain paths and file: URIs)."""
        if not paths.is_local(self.path):
            raise DataError(f"{self.path}: only local paths can be read without Spark")
        for name in local_files(self.path):
            for index, (key, value) in enumerate(seqfile.read_sequence_file(name)):
                yield key_sample(key, value, f"{name} (record {index})")
