"""Task adapters: one per kind of task. Each asks the runner for models and batching."""
