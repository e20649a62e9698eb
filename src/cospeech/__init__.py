"""cospeech: speech + one photo -> a talking, gesturing video, fast enough to stream.

The Python API (docs/generate.md)::

    from cospeech import Generator
    gen = Generator.from_pretrained()           # the bundled demo models
    result = gen("speech.wav", "me.png", output="out.mp4")
    for chunk in gen.stream("speech.wav", "me.png"):
        ...                                     # chunk.frames, chunk.audio

The names below are loaded on first use, so ``import cospeech`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Chunk", "GenerateOptions", "GenerateResult", "Generator", "__version__"]

_API = {
    "Generator": "cospeech.pipeline.generator",
    "Chunk": "cospeech.pipeline.generator",
    "GenerateOptions": "cospeech.pipeline.generate",
    "GenerateResult": "cospeech.pipeline.generate",
}

if TYPE_CHECKING:
    from cospeech.pipeline.generate import GenerateOptions, GenerateResult
    from cospeech.pipeline.generator import Chunk, Generator


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'cospeech' has no attribute {name!r}")
