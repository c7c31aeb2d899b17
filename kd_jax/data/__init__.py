"""Data: readers for FEVER and BEIR layouts -> BM25 candidates -> tokenization -> TFDS examples -> batches."""
