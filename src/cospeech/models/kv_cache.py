"""Key/value cache for chunk-by-chunk (causal, streaming) generation.

Each self-attention layer keeps the keys and values of the chunks already generated.
A chunk is added only once it is final (``commit``): a streaming sampler runs its
denoising steps reading the cache, then one more forward of the clean chunk with
``cache_update=True``, which stages every layer's keys/values and commits them at the
end of that forward (a forward that fails half-way leaves the cache as it was).

Keys are stored **before** RoPE (after the RMSNorm) and rotated for use with
*compacted* positions: the retained frames (sink, then window, in order) take latent
positions ``0 .. n-1`` and the current chunk follows at ``n ..``. Without eviction this is
exactly the absolute frame index, so chunked generation equals one block-causal forward
over the whole sequence. With a rolling window the positions stay below ``n_sink +
window + chunk`` however long the stream runs, so they never leave the RoPE table (or the
range the model was trained on); keys rotated once with absolute positions would not
allow that. The rotated copy is memoised until the cache changes, so the K denoising
steps of a chunk rotate the cached keys once per layer (memory: keys held twice).

Eviction: the first ``sink_chunks`` committed chunks (the reference / first chunk) are
kept forever; of the rest only the last ``window_chunks`` are kept (``None``: keep all).
:attr:`KVCache.frame_indices` names the absolute latent frames held, in order, so a
sparse plan over the whole clip can say which of them a chunk's queries attend.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cospeech.errors import InputError


class KVCache:
    """Per-layer keys ``[B, L, H, D]`` (un-rotated) and values of committed chunks."""

    def __init__(
        self, num_layers: int, sink_chunks: int = 0, window_chunks: int | None = None
    ) -> None:
        if num_layers <= 0 or sink_chunks < 0 or (window_chunks is not None and window_chunks < 0):
            raise InputError("KVCache: num_layers > 0, sink_chunks >= 0, window_chunks >= 0")
        self.num_layers = num_layers
        self.sink_chunks = sink_chunks
        self.window_chunks = window_chunks
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new video)."""
        self._keys: list[torch.Tensor | None] = [None] * self.num_layers
        self._values: list[torch.Tensor | None] = [None] * self.num_layers
        self._rotated: dict[int, torch.Tensor] = {}
        self._chunk_frames: list[int] = []
        self._chunk_starts: list[int] = []
        self._staged: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._staged_frames = 0
        self.grid: tuple[int, int] | None = None
        self.frames_seen = 0

    @property
    def cached_frames(self) -> int:
        """Latent frames whose keys/values are held (sink + window)."""
        return sum(self._chunk_frames)

    @property
    def frame_indices(self) -> list[int]:
        """Absolute latent frame index of every held frame, in storage order."""
        return [
            start + i
            for start, count in zip(self._chunk_starts, self._chunk_frames, strict=True)
            for i in range(count)
        ]

    @property
    def num_chunks(self) -> int:
        return len(self._chunk_frames)

    def begin(self, num_frames: int, grid: tuple[int, int], update: bool) -> None:
        """Start a forward over a chunk of ``num_frames`` latent frames of ``grid`` tokens."""
        if self.grid is not None and grid != self.grid:
            raise InputError(f"KVCache holds a {self.grid} token grid, chunk has {grid}")
        self._staged = {}
        self._staged_frames = num_frames if update else 0

    def past(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Cached ``(keys, values)`` ``[B, L_cached, H, D]`` of ``layer``, or None if empty."""
        keys = self._keys[layer]
        if keys is None:
            return None
        values = self._values[layer]
        assert values is not None
        return keys, values

    def rotated_keys(
        self, layer: int, rotate: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Cached keys of ``layer`` passed through ``rotate`` (RoPE at their compacted
        positions), memoised until the next commit. The layer must hold keys."""
        if layer not in self._rotated:
            keys = self._keys[layer]
            assert keys is not None
            self._rotated[layer] = rotate(keys)
        return self._rotated[layer]

    def stage(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Hold this chunk's un-rotated ``keys``/``values`` ``[B, L, H, D]`` until commit."""
        if self._staged_frames:
            self._staged[layer] = (keys.detach(), values.detach())

    def commit(self, grid: tuple[int, int]) -> None:
        """Append the staged chunk to every layer, then evict beyond the window."""
        if not self._staged_frames:
            return
        if len(self._staged) != self.num_layers:
            raise InputError(
                f"KVCache: {len(self._staged)} of {self.num_layers} layers staged; not committed"
            )
        for layer, (keys, values) in self._staged.items():
            old_k, old_v = self._keys[layer], self._values[layer]
            self._keys[layer] = keys if old_k is None else torch.cat([old_k, keys], dim=1)
            self._values[layer] = values if old_v is None else torch.cat([old_v, values], dim=1)
        self._rotated = {}
        self._chunk_frames.append(self._staged_frames)
        self._chunk_starts.append(self.frames_seen)
        self.frames_seen += self._staged_frames
        self.grid = grid
        self._staged = {}
        self._staged_frames = 0
        self._evict(grid[0] * grid[1])

    def _evict(self, tokens_per_frame: int) -> None:
        if self.window_chunks is None:
            return
        movable = self._chunk_frames[self.sink_chunks :]
        excess = len(movable) - self.window_chunks
        if excess <= 0:
            return
        start = sum(self._chunk_frames[: self.sink_chunks]) * tokens_per_frame
        stop = start + sum(movable[:excess]) * tokens_per_frame
        for layer in range(self.num_layers):
            for store in (self._keys, self._values):
                held = store[layer]
                assert held is not None
                store[layer] = torch.cat([held[:, :start], held[:, stop:]], dim=1)
        del self._chunk_frames[self.sink_chunks : self.sink_chunks + excess]
        del self._chunk_starts[self.sink_chunks : self.sink_chunks + excess]
