"""cospeech: speech + one photo -> a talking, gesturing video, fast enough to stream."""

__version__ = "0.1.0"
