"""Serving: an OpenAI-compatible FastAPI app (so existing clients work unchanged) plus RAG endpoints."""
