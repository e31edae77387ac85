"""Reading and writing the field's result formats (lm-eval results and samples, MTEB result folders,
shared evaluation schemas); imports go into the store through the store's own API."""
