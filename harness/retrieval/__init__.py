"""Retrieval: task specs (``spec``), BEIR folders read and checked (``beir``), the bridge to
``mteb``'s retrieval evaluation (``mteb_bridge``) and the embedder fine-tuning recipe (``train``).
The adapter (``harness/adapters/retrieval.py``) composes them; the runner does the embedding."""
