"""Names of the label sources, as the `source` column of the labels table holds them.

The labeling stages make labels from these sources; the taxonomy statistics count per source and the dataset
assembly writes them (both packages sit above labeling, so neither imports the other for them).
"""

SEARCH_LOG = "search_log"
"""Labels mined from the search log (mine-logs): a query a buyer searched and engaged with."""
TEACHER = "teacher"
"""Labels a teacher model gave in the image pass (`teacher: id@version`, confidence = its score)."""
SELLER_CATEGORY = "seller_category"
"""Labels from the category a seller picked for the listing (category_path; labeling.seller_categories)."""
