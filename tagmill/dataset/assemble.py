"""Assemble: image labels of every source -> a class index and one sample per duplicate cluster, split so
that no product and no duplicate cluster crosses train, validation and test.

Each label keeps its provenance (source, tier, evidence counts, the teacher's id and version) and its
confidence, so a trainer or an analyst can weigh or filter them later. The sources are the search log
(MSURU 3.2) and, when the image pass ran, the teacher's tags (58.com); the taxonomy mapping joins here
when that stage exists.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tagmill.config import SPLITS
from tagmill.labeling.resample import repeat_factors
from tagmill.labeling.sources import SEARCH_LOG, SELLER_CATEGORY, TEACHER
from tagmill.taxonomy.stats import tag_of

_HASH_RANGE = 1 << 30


def class_index(image_labels: DataFrame, taxonomy: DataFrame | None = None) -> DataFrame:
    """One class per distinct label: class_id (0..n-1 in label order, so ids are stable for equal inputs: the
    dense training index), name, path (ancestor names from the top down), taxonomy_id (the class_id of the
    class of the same name in the taxonomy's tables, so the two join on it). path and taxonomy_id come from
    `taxonomy` (name, path, taxonomy_id); without one, path is empty and taxonomy_id null.

    Needs `label`. Numbered with zipWithIndex over the sorted names: distributed, no single-partition window."""
    names = image_labels.select(F.col("label").alias("name")).distinct().orderBy("name")
    numbered = names.rdd.zipWithIndex().map(lambda pair: (pair[1], pair[0][0]))
    index = names.sparkSession.createDataFrame(numbered, "class_id long, name string")
    empty = F.array().cast("array<string>")
    if taxonomy is None:
        return index.select(F.col("class_id").cast("int"), "name", empty.alias("path"),
                            F.lit(None).cast("int").alias("taxonomy_id"))
    return (index.join(taxonomy.select("name", "path", "taxonomy_id"), "name", "left")
            .select(F.col("class_id").cast("int"), "name", F.coalesce("path", empty).alias("path"),
                    F.col("taxonomy_id").cast("int")))


def map_to_classes(labels: DataFrame, tag_map: DataFrame, taxonomy: DataFrame, ancestors: bool) -> DataFrame:
    """LABEL_COLUMNS rows with each raw tag replaced by its taxonomy class (tags the taxonomy dropped go);
    with `ancestors`, each label also stands for every class above its own, with the same provenance
    (Tencent ML-Images propagates labels to ancestors). tag_map: tag, class_name (null when dropped);
    taxonomy: name, path."""
    classes = tag_map.where(F.col("class_name").isNotNull()).select("tag", "class_name")
    mapped = (labels.join(classes, tag_of(F.col("label")) == F.col("tag"))  # as the taxonomy made its tags
              .withColumn("label", F.col("class_name")).drop("tag", "class_name"))
    if not ancestors:
        return mapped.select(*LABEL_COLUMNS)
    above = (mapped.join(taxonomy.select(F.col("name").alias("label"), "path"), "label")
             .withColumn("label", F.explode("path")).drop("path"))
    return mapped.select(*LABEL_COLUMNS).unionByName(above.select(*LABEL_COLUMNS))


def split_column(key: Column, ratios: dict[str, float], seed: int) -> Column:
    """train / validation / test from a stable hash of `key`: the same key lands in the same split on any
    machine and in any run with the same seed, and all rows of one key stay together."""
    uniform = F.abs(F.xxhash64(F.lit(seed), F.lit("split"), key) % F.lit(_HASH_RANGE)) / F.lit(float(_HASH_RANGE))
    train, validation = ratios["train"], ratios["train"] + ratios["validation"]
    return F.when(uniform < train, SPLITS[0]).when(uniform < validation, SPLITS[1]).otherwise(SPLITS[2])


def search_log_labels(image_labels: DataFrame) -> DataFrame:
    """Mined image labels (MSURU 3.2) as LABEL_COLUMNS rows."""
    return image_labels.select("image_key", "product_id", "label", "confidence", F.lit(SEARCH_LOG).alias("source"),
                               "tier", "clicks", "contacts", "in_conversations", "sessions",
                               F.lit(None).cast("string").alias("teacher"))


def teacher_labels(teacher_tags: DataFrame, images: DataFrame, precision: DataFrame | None = None) -> DataFrame:
    """Teacher tags of the image pass (58.com pseudo-labels) as LABEL_COLUMNS rows, one per product listing
    the image. teacher_tags: image_key, name, score, teacher_id, teacher_version; images: image_key, product_id;
    precision: name, precision, the estimated precision of each class's tags at its calibrated threshold
    (image-pass table teacher_thresholds), None when the tags were not calibrated.
    A tag's confidence is its class's estimated precision, a probability of being right like the other
    sources' confidences (a sigmoid score is not one); its score where the class has no estimate. A tag has no
    search-log tier or counts; `teacher` says which model at which version gave it."""
    confidence = F.col("score").cast("double")
    if precision is not None:
        teacher_tags = teacher_tags.join(F.broadcast(precision.select("name", "precision")), "name", "left")
        confidence = F.coalesce(F.col("precision"), confidence)
    return (teacher_tags.join(images.select("image_key", "product_id").distinct(), "image_key")
            .select("image_key", "product_id", F.col("name").alias("label"),
                    confidence.alias("confidence"), F.lit(TEACHER).alias("source"),
                    F.lit(None).cast("string").alias("tier"),
                    *[F.lit(0).cast("long").alias(c) for c in ("clicks", "contacts", "in_conversations", "sessions")],
                    F.concat_ws("@", "teacher_id", "teacher_version").alias("teacher")))


def confirming_tags(teacher: DataFrame, checked: DataFrame) -> DataFrame:
    """The teacher's LABEL_COLUMNS rows that add nothing unchecked: every tag of an image without `checked`
    labels (cold start), and on an image with some only the tags one of them names (image_key and label
    equal). checked: image_key, label (search-log and seller-category labels)."""
    labeled = checked.select("image_key").distinct()
    cold = teacher.join(labeled, "image_key", "left_anti")
    confirming = teacher.join(checked.select("image_key", "label").distinct(), ["image_key", "label"], "left_semi")
    return cold.unionByName(confirming)


def seller_category_labels(category_labels: DataFrame, confidence: float) -> DataFrame:
    """Seller categories (labeling.seller_categories.category_labels: image_key, product_id, label) as
    LABEL_COLUMNS rows, each with the same `confidence` (a seller's own category is rarely wrong)."""
    return category_labels.select(
        "image_key", "product_id", "label", F.lit(float(confidence)).alias("confidence"),
        F.lit(SELLER_CATEGORY).alias("source"), F.lit(None).cast("string").alias("tier"),
        *[F.lit(0).cast("long").alias(c) for c in ("clicks", "contacts", "in_conversations", "sessions")],
        F.lit(None).cast("string").alias("teacher"))


LABEL_COLUMNS = ("image_key", "product_id", "label", "confidence", "source", "tier", "clicks", "contacts",
                 "in_conversations", "sessions", "teacher")
"""One label of one image from one source, as assemble joins them."""


def map_to_query_clusters(labels: DataFrame, clusters: DataFrame) -> DataFrame:
    """Search-log LABEL_COLUMNS rows with each query label replaced by its query cluster, "query cluster N"
    (MSURU 5.5: clusters of query embeddings as an alternative label space); other sources, and queries
    without a cluster, go. clusters: query, cluster (-1: none)."""
    named = (clusters.where(F.col("cluster") >= 0)
             .select(F.col("query").alias("label"),
                     F.concat(F.lit("query cluster "), F.col("cluster").cast("string")).alias("cluster_name")))
    return (labels.where(F.col("source") == SEARCH_LOG).join(named, "label")
            .withColumn("label", F.col("cluster_name")).select(*LABEL_COLUMNS))


def with_title_ids(samples: DataFrame, title_tokens: DataFrame, vocabulary: DataFrame, max_words: int) -> DataFrame:
    """samples + title_ids: the ids of the first `max_words` tokens of the sample's product title (SICoT side
    information; 1 = a word without a vector, no padding, an empty array for a title without tokens).

    title_tokens: product_id, tokens; vocabulary: token, id (labeling.word_vectors' ids)."""
    ids = (title_tokens.select("product_id", F.posexplode("tokens").alias("pos", "token"))
           .where(F.col("pos") < max_words)
           .join(F.broadcast(vocabulary), "token", "left")
           .groupBy("product_id")
           .agg(F.array_sort(F.collect_list(F.struct("pos", F.coalesce("id", F.lit(1)).alias("id"))))
                .alias("ids"))
           .select("product_id", F.col("ids.id").cast("array<int>").alias("title_ids")))
    empty = F.array().cast("array<int>")
    return (samples.join(ids, "product_id", "left")
            .withColumn("title_ids", F.coalesce("title_ids", empty)))


def split_groups(members: DataFrame, max_rounds: int = 50) -> DataFrame:
    """Which products must share a split: connected components of the graph whose edges join a product to
    each duplicate cluster of its images. members: product_id, cluster -> product_id, group (the smallest
    product id of its component).

    Min-label propagation; each round is two aggregations, and a round that changes nothing ends it (the
    number of rounds grows with the longest product-cluster chain, a handful in practice)."""
    edges = members.select("product_id", "cluster").distinct().persist()
    groups = edges.select("product_id").distinct().withColumn("group", F.col("product_id"))
    for _ in range(max_rounds):
        cluster_min = edges.join(groups, "product_id").groupBy("cluster").agg(F.min("group").alias("group"))
        updated = (edges.join(cluster_min, "cluster").groupBy("product_id").agg(F.min("group").alias("group"))
                   .localCheckpoint())
        changed = (updated.join(groups.withColumnRenamed("group", "before"), "product_id")
                   .where(F.col("group") != F.col("before")).count())
        groups = updated
        if changed == 0:
            break
    else:
        raise RuntimeError(f"split groups did not settle in {max_rounds} rounds of label propagation")
    edges.unpersist()
    return groups


def assemble_samples(labels: DataFrame, images: DataFrame, classes: DataFrame, clusters: DataFrame,
                     ratios: dict[str, float], seed: int) -> DataFrame:
    """One sample per duplicate cluster that has labels.

    labels: LABEL_COLUMNS rows of every source; images: image_key, product_id, title (every listing image);
    classes: the class index (class_id, name);
    clusters: image_key, image_path, cluster, canonical, component, one row per usable image (see
    labeling.near_duplicates.image_clusters; without an image pass every image is its own cluster).

    Returns image_key, product_id, image_path, title, class_ids (sorted), labels (array of structs sorted by
    class_id: class_id, name, confidence, source, tier, clicks, contacts, in_conversations, sessions,
    teacher), split (`with_repeats` adds the repeat factors).

    A cluster's sample is its canonical image, carrying the labels of all its images (one per class: the
    provenance of the source whose evidence is strongest, the teacher's only where no other source gave the
    class, so that `source` says whether shoppers or sellers vouch for it; and one confidence from every source
    that gave the class, `noisy_or` of each source's strongest), the title of the smallest product id among
    them. The split hashes the component of products joined through shared duplicates
    (split_groups over every usable image, labeled or not), so neither a product nor a verified duplicate pair
    is ever in two splits (MSURU 3.2: dedup before the split)."""
    label = F.struct(
        F.col("class_id"), F.col("name"), F.col("confidence"), F.col("source"), F.col("tier"), F.col("clicks"),
        F.col("contacts"), F.col("in_conversations"), F.col("sessions"), F.col("teacher"))
    member = clusters.select("image_key", "cluster")
    # max over structs compares the first field first: each source's strongest evidence of a class, then the
    # provenance of the strongest source that is not the teacher (the teacher's only where it alone gave the
    # class), with the sources' confidences combined
    per_source = (labels.join(member, "image_key")
                  .join(classes.select("class_id", F.col("name").alias("label"), "name"), "label")
                  .groupBy("cluster", "class_id", "source")
                  .agg(F.max(F.struct("confidence", label.alias("label"))).alias("best")))
    per_class = (per_source.groupBy("cluster", "class_id")
                 .agg(F.max(F.struct((F.col("source") != TEACHER).alias("observed"), "best"))
                      .getField("best").getField("label").alias("label"),
                      noisy_or(F.collect_list("best.confidence")).alias("combined"))
                 .select("cluster", "class_id", F.col("label").withField("confidence", F.col("combined"))
                         .alias("label")))
    grouped = per_class.groupBy("cluster").agg(F.array_sort(F.collect_list("label")).alias("labels"))
    listed = images.join(member, "image_key")
    owner = listed.groupBy("cluster").agg(F.min(F.struct("product_id", "title")).alias("owner"))
    canonical = clusters.where("canonical").select("cluster", "image_key", "image_path")
    component = clusters.select("image_key", F.col("component").alias("cluster"))
    groups = split_groups(images.join(component, "image_key"))
    return (grouped.join(canonical, "cluster").join(owner, "cluster")
            .join(groups, F.col("owner.product_id") == groups["product_id"])
            .select(
                "image_key",
                F.col("owner.product_id").alias("product_id"),
                "image_path",
                F.col("owner.title").alias("title"),
                F.transform("labels", lambda x: x["class_id"]).alias("class_ids"),
                "labels",
                split_column(F.col("group"), ratios, seed).alias("split"),
            ))


def with_repeats(samples: DataFrame, factor: float, seed: int) -> tuple[DataFrame, float]:
    """(samples with repeats after labels, the threshold t): square-root resampling (MSURU 5.4, see
    labeling.resample) over the dataset's own classes in the training split, so that a class is rare or
    common by all the labels a model trains on (search log, sellers' categories, teacher), after the taxonomy
    merged its tags. Validation and test samples repeat once; so does every sample with factor 0.

    On the demo, training with them (3 epochs, against 4 without) moved the test top-1 against the truth of the
    teacher from 0.732 to 0.830 and of the final model from 0.695 to 0.880; without them the teacher all but
    never predicted a class with under 10 training images (cold-start images of such classes: top-1 0.00-0.04,
    with them 0.14-0.59)."""
    train = samples.where(F.col("split") == "train").select("image_key", F.explode("class_ids").alias("label"))
    factors, threshold = repeat_factors(train, factor, seed)
    return (samples.join(factors.select("image_key", F.col("repeats").cast("int")), "image_key", "left")
            .select(*[c for c in samples.columns if c != "split"], F.coalesce("repeats", F.lit(1)).alias("repeats"),
                    "split"), threshold)


def noisy_or(confidences: Column) -> Column:
    """1 - prod(1 - c) over an array of confidences in [0, 1]: the chance that at least one source is right
    when each is right with its confidence, independently. It grows with every source's confidence and never
    falls when a source is added. The search log already combines its sessions this way
    (labeling.mining.label_confidence); a teacher trained on search-log labels is not independent of them,
    so an agreement of the two is scored higher than it should be. Sorted first, so the product, and the
    published bytes, do not depend on the order Spark collected the list in."""
    return F.lit(1.0) - F.aggregate(F.array_sort(confidences), F.lit(1.0), lambda miss, c: miss * (F.lit(1.0) - c))


def weak_classes(support: DataFrame, paths: DataFrame | None, min_train: int) -> dict[str, str | None]:
    """Classes with fewer than `min_train` training samples -> the class they fold into: their parent in the
    taxonomy (the last name of their path), or None (their labels go) without one. support: class_support's
    rows; paths: name, path (the taxonomy's), None without a taxonomy. One row per class is collected."""
    weak = support.where(F.col("support_train") < min_train)
    if paths is None:
        return {r["name"]: None for r in weak.select("name").collect()}
    rows = weak.select("name", "path").collect()
    return {r["name"]: (r["path"][-1] if r["path"] else None) for r in rows}


def fold_weak_classes(labels: DataFrame, folds: dict[str, str | None]) -> DataFrame:
    """LABEL_COLUMNS rows with each label of a weak class replaced by the class it folds into; labels of a
    class that folds into nothing go (an image's two labels of one class after folding keep the strongest:
    assemble_samples)."""
    if not folds:
        return labels
    mapping = labels.sparkSession.createDataFrame(sorted(folds.items()), "label string, into string")
    return (labels.join(F.broadcast(mapping), "label", "left")
            .where(F.col("into").isNotNull() | ~F.col("label").isin(list(folds)))
            .withColumn("label", F.coalesce("into", "label")).select(*LABEL_COLUMNS))


def own_clusters(images: DataFrame) -> DataFrame:
    """Every image its own cluster, for a build without an image pass: image_key, image_path, cluster,
    canonical (an image listed under two paths keeps the smallest). images: image_key, image_path."""
    return (images.groupBy("image_key").agg(F.min("image_path").alias("image_path"))
            .select("image_key", "image_path", F.col("image_key").alias("cluster"), F.lit(True).alias("canonical"),
                    F.col("image_key").alias("component")))


def class_support(samples: DataFrame, classes: DataFrame) -> DataFrame:
    """The class index with its support per split: class_id, name, path, taxonomy_id, support_train,
    support_validation, support_test (images carrying the class, repeats not counted)."""
    counts = (samples.select("split", F.explode("class_ids").alias("class_id"))
              .groupBy("class_id").pivot("split", list(SPLITS)).count())
    return classes.join(counts, "class_id", "left").select(
        "class_id", "name", "path", "taxonomy_id",
        *[F.coalesce(F.col(s), F.lit(0)).cast("long").alias(f"support_{s}") for s in SPLITS])
