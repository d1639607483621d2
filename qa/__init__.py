"""Attention-based reading-comprehension question answering.

``from qa import Reader``; ``Reader.load()`` loads the shipped model offline. ``Reader`` and
``Answer`` are imported on first use, so that ``qa --help`` and input errors need no torch.
"""
__all__ = ["Answer", "Reader"]


def __getattr__(name: str):
    if name in __all__:
        from qa import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
