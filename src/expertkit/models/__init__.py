"""Models: the registry of named models, and the Embedder and Generator backends."""
