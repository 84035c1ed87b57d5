"""Which order a rank's training records are fed in: storage order, or shuffled per pass
when a CoSData layer asks for it."""

from cos.proto import caffe_pb2
from cos.spark.jobs import pass_order


def cos_layer(shuffle):
    layer = caffe_pb2.LayerParameter(name="data", type="CoSData")
    layer.cos_data_param.batch_size = 4
    layer.cos_data_param.shuffle = shuffle
    return layer


def test_storage_order_without_shuffle():
    records = list(range(10))
    order = pass_order(records, cos_layer(False), caffe_pb2.TRAIN, 0)
    assert list(order()) == records and list(order()) == records


def test_shuffle_is_a_new_permutation_each_pass_and_reproducible():
    records = list(range(50))
    order = pass_order(records, cos_layer(True), caffe_pb2.TRAIN, 3)
    first, second = list(order()), list(order())
    assert sorted(first) == sorted(second) == records
    assert first != records and second != first
    again = pass_order(records, cos_layer(True), caffe_pb2.TRAIN, 3)
    assert list(again()) == first


def test_test_phase_never_shuffles():
    records = list(range(20))
    assert list(pass_order(records, cos_layer(True), caffe_pb2.TEST, 0)()) == records
