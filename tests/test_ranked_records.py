"""How training records are dealt to ranks: one partition per rank, order kept."""

import os
import sys

import pytest

from cos.spark.caffe_on_spark import ranked_records
from cos.spark.jobs import ordered_records

pytestmark = [pytest.mark.slow, pytest.mark.spark]


@pytest.fixture(scope="module")
def sc():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkConf, SparkContext
    context = SparkContext(conf=SparkConf().setMaster("local[2]").setAppName("ranked")
                           .set("spark.ui.enabled", "false"))
    yield context
    context.stop()


def ranks(rdd):
    return [ordered_records(part) for part in rdd.glom().collect()]


def test_fewer_partitions_than_ranks_gives_contiguous_blocks(sc):
    dealt = ranks(ranked_records(sc.parallelize(range(11), 1), 3))
    assert dealt == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]


def test_more_partitions_than_ranks_go_round_robin_in_order(sc):
    dealt = ranks(ranked_records(sc.parallelize(range(10), 5), 2))
    assert dealt == [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7]]


def test_matching_partitions_are_kept(sc):
    rdd = sc.parallelize(range(6), 2)
    assert ranked_records(rdd, 2) is rdd
