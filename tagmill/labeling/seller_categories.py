"""Seller categories as labels: the category a seller picked for a listing (`category_path`, e.g.
"Furniture > Seating > Sofa") labels every image of the listing, next to the search log and the teacher.

A path's levels are split at ">", "/", "|", "›", "»" or "--" and normalized like queries (labeling.text), so
"Sofa" meets the shoppers' "sofa" and becomes one class with it in the taxonomy. The leaf labels the images;
with `ancestors` (taxonomy.propagate_to_ancestors) every level above it does too.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tagmill.config import TextConfig
from tagmill.labeling.mining import normalize_query_column

SEPARATORS = r"\s*(?:>|/|\||›|»|--)\s*"


def category_labels(images: DataFrame, text: TextConfig, ancestors: bool) -> DataFrame:
    """images: image_key, product_id, category_path (null: the seller gave none) -> image_key, product_id,
    label, depth (0: the path's leaf, 1: its parent, ...): one row per labeled level, levels that normalize to
    nothing left out. Normalization runs once per distinct level name."""
    levels = F.filter(F.split(F.trim("category_path"), SEPARATORS), lambda x: x != "")
    exploded = (images.where(F.col("category_path").isNotNull())
                .select("image_key", "product_id", F.reverse(levels).alias("levels"))
                .select("image_key", "product_id", F.posexplode("levels").alias("depth", "query")))
    if not ancestors:
        exploded = exploded.where(F.col("depth") == 0)
    named = normalize_query_column(exploded, text).where(F.col("query_norm") != "")
    return named.select("image_key", "product_id", F.col("query_norm").alias("label"), "depth").distinct()
