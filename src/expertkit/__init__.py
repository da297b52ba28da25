"""expertkit: make a small language model an expert in one industry with that business's own data."""

__version__ = "0.1.0"
