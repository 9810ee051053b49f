"""Names of the label sources, as the `source` column of the labels table holds them.

Their own module because both the dataset assembly (which writes them) and the taxonomy statistics (which
count per source) read them, and the assembly maps labels through the taxonomy's `tag_of`.
"""

SEARCH_LOG = "search_log"
"""Labels mined from the search log (mine-logs): a query a buyer searched and engaged with."""
TEACHER = "teacher"
"""Labels a teacher model gave in the image pass (`teacher: id@version`, confidence = its score)."""
