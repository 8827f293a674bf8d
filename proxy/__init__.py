"""Deja: an OpenAI-compatible reverse proxy with a semantic cache."""

__version__ = "0.1.0"
