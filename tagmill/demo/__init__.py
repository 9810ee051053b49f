"""The generated demo marketplace used by the demo build and the tests.

Entry point: `tagmill.demo.generate.generate_market(root, cfg, run_date, retention_days) -> dict`.

Modules, one line each:
    vocabulary   the category tree (domain > group > leaf) with Chinese names and WordNet synonyms
    queries      every query surface form of a leaf (plural, synonym, Chinese, variant, misspelling)
    catalog      listings per leaf (long tail), titles, image paths, and the bad catalog rows
    images       one visual signature per leaf, drawing, near-copy transforms, broken-file bytes
    image_plan   which image paths are originals, exact/near copies (re-uploads, stock photos) or broken
    sessions     search sessions: a simulated search engine, position-biased clicks, bots, expired sessions
    eventlog     event partition files with bad rows planted at recorded lines
    titled       small titled datasets published without a build (trainer tests, the side-info benchmark)
    randomness   named seeded random streams (numpy PCG64 / stdlib) derived from the one demo seed
    generate     orchestration, writing, truth CSVs and the summary
"""
