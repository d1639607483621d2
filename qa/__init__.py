"""Attention-based reading-comprehension question answering.

``from qa import Reader``; ``Reader.load()`` loads the shipped model offline.
"""
from qa.reader import Answer, Reader

__all__ = ["Answer", "Reader"]
