"""Duplicate clusters in Spark (MSURU 3.2): exact by content hash, near by verified code neighbours.

The numeric work lives in `labeling.candidates` (candidates by Hamming distance with faiss),
`labeling.verification` (verification on embeddings and aligned thumbnails) and `labeling.clusters`
(clusters that grow only through verified pairs); these are their Spark adapters. Two steps see all items
at once, in one task: the candidate search (8 bytes of code, 8 of id and the 432-byte int8 layout descriptor
per unique image, so ~4.5 GB for 10M images besides the candidate pairs; see `code_candidates`) and the
clustering of verified pairs (a few per duplicate). Everything else is distributed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from tagmill.config import DedupConfig
from tagmill.labeling.candidates import layout_candidates
from tagmill.labeling.clusters import canonical_order, cluster
from tagmill.labeling.image_pass import embedding_matrix, fixed_binary, spark_schema
from tagmill.labeling.layout import compact_layouts
from tagmill.labeling.verification import verify_pairs

CANDIDATE_SCHEMA = pa.schema([("item_a", pa.int64()), ("item_b", pa.int64()), ("hamming", pa.int32())])
PIXEL_SCORES = ("pixel_similarity", "zoom", "degrees", "detail_correlation")
"""What `verification.verify_pairs` measures on a pair's two thumbnails alone (so a later run may reuse it)."""
EVIDENCE_SCHEMA = pa.schema([("item_a", pa.int64()), ("item_b", pa.int64()), ("hamming", pa.int32()),
                             ("cosine", pa.float32()), *((name, pa.float32()) for name in PIXEL_SCORES),
                             ("pixels_reused", pa.bool_()), ("verified", pa.bool_()), ("reason", pa.string())])
CLUSTER_SCHEMA = pa.schema([("item", pa.int64()), ("cluster_item", pa.int64()), ("component_item", pa.int64())])


def code_candidates(contents: DataFrame, code_bytes: int, cfg: DedupConfig, seed: int = 0) -> DataFrame:
    """contents: item, layout_code, layout -> item_a < item_b, hamming: pairs of layout codes within
    cfg.max_hamming bits (all of them up to cfg.exact_hamming), of which each image keeps its cfg.shortlist
    nearest by the cosine of the layout descriptors (labeling.layout.shortlist), so verification stays
    bounded; and the same for each part of the picture (cfg.region_shortlist, cfg.region_hamming; the parts'
    codes fitted here, seeded). See labeling.candidates.layout_candidates.

    Why the cosine and not the Hamming distance: look-alikes (a shop's articles of one kind, shot alike) tie
    with the true copies at 0-2 bits and crowd them out of a shortlist ranked by bits; the descriptor still
    tells them apart. Real-photo set (benchmarks/near_duplicates_real.py, seed 5, shortlist 8): true pairs
    reaching verification 0.81 ranked by bits, 0.89 by cosine.

    Memory, in this one task: the input is read batch by batch and each image keeps its id (8 bytes), code
    (code_bytes) and its descriptor as int8 (labeling.layout.compact_layouts: 432 bytes; the ranking is
    unchanged to 0.001 of true pairs), ~450 bytes, so ~4.5 GB for 10M images (1.7 KB of float32 before;
    the ~256 bytes aimed at need a 6 x 6 chroma grid, see labeling.layout); then the candidate pairs
    (i, j, distance: 24 bytes each, ~60 per image within 12 bits at 1M random-like codes) and the shortlist's
    sort of them; then, part by part, that part's int8 descriptor (192-252 bytes per image, ~2.5 GB at 10M),
    its 8-byte code and its pairs within cfg.region_hamming bits. Time at 100,000 simulated codes on 2 cores:
    30 s for the whole layout, 99 s with the parts (benchmarks/near_duplicates_real.py --scale)."""

    selected = contents.select("item", "layout_code", "layout")

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        items, codes, layouts = [], [], []
        for batch in batches:  # kept compact batch by batch: the float column is never held whole
            if batch.num_rows == 0:
                continue
            items.append(batch.column("item").to_numpy())
            codes.append(fixed_binary(batch.column("layout_code"), code_bytes))
            layouts.append(compact_layouts(embedding_matrix(batch.column("layout"))))
        if sum(len(x) for x in items) < 2:
            return
        ids, compact = np.concatenate(items), np.concatenate(layouts)
        i, j, distance = layout_candidates(np.concatenate(codes), compact, cfg.max_hamming, cfg.exact_hamming,
                                           cfg.shortlist, cfg.region_hamming, cfg.region_shortlist, seed)
        a, b = ids[i], ids[j]
        yield pa.RecordBatch.from_arrays([pa.array(np.minimum(a, b)), pa.array(np.maximum(a, b)),
                                          pa.array(distance.astype(np.int32))], schema=CANDIDATE_SCHEMA)

    return selected.repartition(1).mapInArrow(run, spark_schema(CANDIDATE_SCHEMA))


def verify_candidates(candidates: DataFrame, items: DataFrame, cfg: DedupConfig, thumbnail_size: int,
                      embeddings: bool = True, earlier: DataFrame | None = None) -> DataFrame:
    """candidates: item_a, item_b, hamming; items: item, embedding, thumbnail -> EVIDENCE_SCHEMA rows: the
    scores of each pair and the decision (score first, decide second; the scores stay for the report).
    embeddings=False (no teacher): the thumbnails alone decide, the cosine stays NaN. earlier: item_a, item_b
    and the PIXEL_SCORES of pairs an earlier run compared with the same `verification.pixel_scores_version`:
    those are not compared again (pixels_reused)."""

    def side(name):
        return items.select(F.col("item").alias(f"item_{name}"), F.col("embedding").alias(f"embedding_{name}"),
                            F.col("thumbnail").alias(f"thumbnail_{name}"))

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            known = np.stack([batch.column(name).to_numpy(zero_copy_only=False) for name in PIXEL_SCORES])  # null: NaN
            scores = verify_pairs(embedding_matrix(batch.column("embedding_a")) if embeddings else None,
                                  embedding_matrix(batch.column("embedding_b")) if embeddings else None,
                                  batch.column("thumbnail_a").to_pylist(), batch.column("thumbnail_b").to_pylist(),
                                  cfg.min_cosine, cfg.min_pixel_similarity, thumbnail_size, known)
            yield pa.RecordBatch.from_arrays(
                [batch.column("item_a"), batch.column("item_b"), batch.column("hamming"),
                 *(pa.array(scores[name], pa.float32()) for name in ("cosine", *PIXEL_SCORES)),
                 pa.array(scores["reused"], pa.bool_()), pa.array(scores["verified"], pa.bool_()),
                 pa.array(scores["reason"], pa.string())], schema=EVIDENCE_SCHEMA)

    if earlier is None:
        candidates = candidates.select("*", *(F.lit(None).cast("float").alias(name) for name in PIXEL_SCORES))
    else:
        candidates = candidates.join(earlier.select("item_a", "item_b", *PIXEL_SCORES), ["item_a", "item_b"], "left")
    joined = candidates.join(side("a"), "item_a").join(side("b"), "item_b")
    return joined.select("item_a", "item_b", "hamming", *PIXEL_SCORES, "embedding_a", "embedding_b", "thumbnail_a",
                         "thumbnail_b").mapInArrow(run, spark_schema(EVIDENCE_SCHEMA))


def cluster_items(evidence: DataFrame, items: DataFrame, split_guard: float) -> DataFrame:
    """evidence: item_a, item_b, verified, pixel_similarity; items: item, width, height, content_hash ->
    item, cluster_item, component_item for every item in a verified or guarded pair (others are their own
    cluster and component). Clusters come from verified pairs; components also join the pairs whose
    thumbnails agree at least `split_guard`, so a duplicate the verifier missed narrowly still stays in its
    twin's split. The canonical image of a cluster is the one verified against the most others, then the
    largest, then the smallest content hash (labeling.clusters.canonical_order), so a re-run picks the same one."""
    # Spark orders NaN above every number, so a pair whose pixels were never compared (NaN) must not pass
    # for a guarded one: that chained most of the demo's products into one split component
    guarded = ~F.isnan("pixel_similarity") & (F.col("pixel_similarity") >= split_guard)
    pairs = (evidence.where(F.col("verified") | (F.lit(split_guard < 1.0) & F.coalesce(guarded, F.lit(False))))
             .select("item_a", "item_b", F.col("verified").alias("merge")))
    involved = (pairs.select(F.col("item_a").alias("item")).union(pairs.select(F.col("item_b").alias("item")))
                .distinct().join(items, "item")
                .select("item", (F.col("width").cast("long") * F.col("height")).alias("area"), "content_hash"))
    rows = (involved.select(F.lit("item").alias("kind"), "item", F.lit(None).cast("long").alias("other"), "area",
                            "content_hash")
            .unionByName(pairs.select(F.lit("pair").alias("kind"), F.col("item_a").alias("item"),
                                      F.col("item_b").alias("other"), F.lit(None).cast("long").alias("area"),
                                      F.lit(None).cast("string").alias("content_hash"), "merge"),
                         allowMissingColumns=True))

    schema = to_arrow_schema(rows.schema)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = whole_partition(batches, schema)
        if table.num_rows == 0:  # no verified or guarded pair anywhere: every item is its own cluster
            return
        nodes = table.filter(pc.equal(table.column("kind"), "item"))
        edges = table.filter(pc.equal(table.column("kind"), "pair"))
        ids = nodes.column("item").to_numpy()
        index = {v: k for k, v in enumerate(ids.tolist())}
        a = np.array([index[v] for v in edges.column("item").to_pylist()], np.int64)
        b = np.array([index[v] for v in edges.column("other").to_pylist()], np.int64)
        merge = np.array(edges.column("merge").to_pylist(), bool)
        order = canonical_order(a, b, merge, nodes.column("area").to_numpy(),
                                np.array(nodes.column("content_hash").to_pylist()))
        cluster_of, _ = cluster(len(ids), a, b, merge, order)
        component_of = components(len(ids), a, b, order)
        yield pa.RecordBatch.from_arrays([pa.array(ids), pa.array(ids[cluster_of]), pa.array(ids[component_of])],
                                         schema=CLUSTER_SCHEMA)

    return rows.repartition(1).mapInArrow(run, spark_schema(CLUSTER_SCHEMA))


def whole_partition(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    """A task's batches as one table. An empty partition sends no batch at all and from_batches cannot type
    nothing, so `schema` (the input's, to_arrow_schema of the DataFrame) types it; otherwise the batches' own
    schema stands, since Spark marks a column `not null` by how it was computed and from_batches refuses
    batches whose nullability differs from the schema it is given."""
    batches = list(batches)
    return pa.Table.from_batches(batches, schema=batches[0].schema if batches else schema)


def components(n: int, a: np.ndarray, b: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The connected component of each item over the verified pairs, named by its best-ranked item.

    Clusters are stricter (a member was verified against its canonical image), so two verified duplicates
    can sit in different clusters; the split is keyed by the component, so they never cross splits.

    order: (n,) each item's rank (lowest best), distinct as `canonical_order` gives; of items tied for the
    best rank in a component, the smaller index names it."""
    if n == 0:
        return np.zeros(0, np.int64)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    graph = coo_array((np.ones(len(a), bool), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    # each component's first item in rank order (np.unique: first position of each label)
    by_rank = np.lexsort((np.arange(n), np.asarray(order)))
    _, first = np.unique(label[by_rank], return_index=True)
    return by_rank[first][label].astype(np.int64)


def image_clusters(hashed: DataFrame, contents: DataFrame, clusters: DataFrame) -> DataFrame:
    """One row per usable image: image_key, image_path, content_hash, cluster (the canonical content's
    hash), canonical (the one image a dataset keeps of its cluster), duplicate_of (that image's key, for
    the others), relation (null, "exact": same bytes as the canonical, or "near") and component (the
    content hash naming its component of verified pairs: what the split keeps together).

    hashed: image_key, image_path, content_hash of readable images; contents: item, content_hash of
    decoded contents; clusters: item, cluster_item, component_item."""
    named = contents.select(F.col("item").alias("named_item"), F.col("content_hash").alias("name"))
    per_content = (contents.join(clusters, "item", "left")
                   .join(named.withColumnRenamed("name", "cluster"), F.col("cluster_item") == F.col("named_item"),
                         "left").drop("named_item")
                   .join(named.withColumnRenamed("name", "component"),
                         F.col("component_item") == F.col("named_item"), "left")
                   .select("content_hash", F.coalesce("cluster", "content_hash").alias("cluster"),
                           F.coalesce("component", "content_hash").alias("component")))
    images = hashed.join(per_content, "content_hash")
    # the canonical image: of the canonical content's images, the smallest path
    first = (images.where(F.col("content_hash") == F.col("cluster")).groupBy("cluster")
             .agg(F.min(F.struct("image_path", "image_key")).alias("first")))
    return (images.join(first, "cluster")
            .select("image_key", "image_path", "content_hash", "cluster",
                    (F.col("image_key") == F.col("first.image_key")).alias("canonical"),
                    F.when(F.col("image_key") != F.col("first.image_key"), F.col("first.image_key"))
                    .alias("duplicate_of"),
                    F.when(F.col("image_key") == F.col("first.image_key"), F.lit(None).cast("string"))
                    .when(F.col("content_hash") == F.col("cluster"), F.lit("exact"))
                    .otherwise(F.lit("near")).alias("relation"),
                    "component"))
