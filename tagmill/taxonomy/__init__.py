"""Tag statistics, rare filter, co-occurrence, WordNet merge, hierarchy and reports."""
