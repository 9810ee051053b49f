"""Labels from search logs and images: mining, text normalization, resampling."""
