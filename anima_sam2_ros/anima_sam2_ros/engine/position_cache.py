"""Sine position encodings computed once per feature-map shape instead of once per frame.

transformers' ``Sam2SinePositionEmbedding`` memoises one shape (an ``lru_cache`` of size 1 that
the class shares), but the vision neck asks for four shapes per image, so every frame recomputes
all four: for hiera-small at 1024x1024 that is 85 MiB of sines and cosines, 70 ms per frame on 2
CPU cores (3% of the image encoder; 0.8 of 8 ms in a test-micro tracking step), of which SAM 2 reads only
the lowest-resolution map. The encodings depend only on shape, device and dtype, so
``cache_position_encodings`` wraps the network's sine encoders in ``CachedPositionEncoding``:
the first frame computes them, later frames reuse them (a bounded cache: a few entries per
network, held until the model is released).

The cache is used only under ``torch.inference_mode`` (how the engine runs the network), never
while ``torch.compile`` traces (the compiler folds the computation itself) and never with a
padding mask. ``bypass_position_cache`` turns it off for a block, e.g. to time transformers'
stock code on the same network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

# Distinct (shape, device, dtype) entries kept per encoder: the neck needs 4 per dtype.
MAX_ENTRIES = 16
_WRAPPED = ("Sam2SinePositionEmbedding", "Sam2VideoPositionEmbeddingSine")


def _compiling() -> bool:
    check = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch >= 2.3
    return bool(check()) if check is not None else False


class CachedPositionEncoding(torch.nn.Module):
    """A sine position encoder whose outputs are memoised by ``(shape, device, dtype)``."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.enabled = True
        self._cache: dict[tuple, torch.Tensor] = {}

    def forward(self, shape: Any, device: Any, dtype: torch.dtype, mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """The encoding of a ``shape`` feature map: from the cache when it may be, else computed."""
        if mask is not None or not self.enabled or _compiling() or not torch.is_inference_mode_enabled():
            return self.inner(shape, device, dtype, mask)
        key = (tuple(int(s) for s in shape), str(torch.device(device)), dtype)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            hit = self._cache[key] = self.inner(shape, device, dtype)
        return hit

    def clear(self) -> None:
        """Drop the memoised encodings."""
        self._cache.clear()

    def cache_nbytes(self) -> int:
        """Bytes held by the memoised encodings."""
        return sum(t.numel() * t.element_size() for t in self._cache.values())

    def _apply(self, *args: Any, **kwargs: Any) -> Any:
        # .to() / .cuda() / .half(): entries for the old device or dtype would never be read again.
        self._cache.clear()
        return super()._apply(*args, **kwargs)


def cache_position_encodings(model: torch.nn.Module) -> list[str]:
    """Wrap every sine position encoder of ``model`` (in place); returns the wrapped names.

    The encoders have no parameters or buffers, so ``state_dict`` keys are unchanged. Calling it
    again wraps nothing new.
    """
    targets = [(name, module) for name, module in model.named_modules()
               if type(module).__name__ in _WRAPPED]
    done = []
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(parent, CachedPositionEncoding):
            continue
        setattr(parent, attr, CachedPositionEncoding(module))
        done.append(name)
    return done


def position_caches(model: torch.nn.Module) -> list[CachedPositionEncoding]:
    """The ``CachedPositionEncoding`` modules of ``model``."""
    return [m for m in model.modules() if isinstance(m, CachedPositionEncoding)]


@contextlib.contextmanager
def bypass_position_cache(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block ``model``'s position encoders compute every call, as transformers' do."""
    caches = position_caches(model)
    before = [c.enabled for c in caches]
    for c in caches:
        c.enabled = False
    try:
        yield
    finally:
        for c, was in zip(caches, before, strict=True):
            c.enabled = was
