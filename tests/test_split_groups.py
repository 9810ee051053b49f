"""assemble's leak-free split: products joined through shared duplicate clusters land in one group."""

from __future__ import annotations

import pytest

from tagmill.dataset.assemble import split_groups

pytestmark = [pytest.mark.spark]


def test_products_sharing_a_cluster_chain_into_one_group(spark):
    # p3 - c1 - p1 - c2 - p2 - c3 - p5 is one component; p4 and p6 stand alone (p6 has two clusters of its own)
    members = [("p3", "c1"), ("p1", "c1"), ("p1", "c2"), ("p2", "c2"), ("p2", "c3"), ("p5", "c3"),
               ("p4", "c4"), ("p6", "c5"), ("p6", "c6"), ("p1", "c2")]
    df = spark.createDataFrame(members, "product_id string, cluster string").repartition(3)
    groups = {r.product_id: r.group for r in split_groups(df).collect()}
    assert groups == {"p1": "p1", "p2": "p1", "p3": "p1", "p5": "p1", "p4": "p4", "p6": "p6"}


def test_a_long_chain_settles(spark):
    # a chain of 6 products, each sharing one cluster with the next: propagation needs several rounds
    members = [(f"p{i:02d}", f"c{i:02d}") for i in range(6)] + [(f"p{i + 1:02d}", f"c{i:02d}") for i in range(5)]
    df = spark.createDataFrame(members, "product_id string, cluster string")
    groups = {r.product_id: r.group for r in split_groups(df).collect()}
    assert groups == {f"p{i:02d}": "p00" for i in range(6)}
