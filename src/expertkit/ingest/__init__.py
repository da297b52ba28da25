"""Ingestion: readers turn files into Documents, chunking makes Chunks, sync writes them to the index."""
