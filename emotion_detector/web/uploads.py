"""Upload bodies read as they arrive: a multipart field or the raw body, as chunks for VideoService.create to
write to disk (refused as soon as the limit passes, never parsed whole first), yielding to the other
greenlets of a gevent worker between chunks so that live sockets on the same worker keep their pace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import IO

from werkzeug.sansio.multipart import Data, Epilogue, File, MultipartDecoder, NeedData

CHUNK_BYTES = 256 * 1024
# The decoder's unparsed buffer: one chunk and a little, unless a part's headers never end (then 413).
MAX_BUFFER_BYTES = 2 * CHUNK_BYTES


class MissingFile(ValueError):
    pass


def raw_body(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk
        # A fast client never makes the socket read block, so nothing else would run until the upload ends:
        # under gevent (monkey-patched) this hands the loop to the other greenlets; elsewhere it is a no-op.
        time.sleep(0)


def multipart_file(stream: IO[bytes], boundary: bytes, field: str) -> tuple[str, Iterator[bytes]]:
    """The file sent as multipart field ``field``: its filename, and its content as it arrives. Reads the
    parts before it (bounded), then hands over; raises MissingFile when the body ends without it."""
    decoder = MultipartDecoder(boundary, max_form_memory_size=MAX_BUFFER_BYTES)
    source = raw_body(stream)
    for chunk in source:
        decoder.receive_data(chunk)
        while not isinstance(event := decoder.next_event(), NeedData):
            if isinstance(event, File) and event.name == field:
                return event.filename or "", _file_data(decoder, source)
            if isinstance(event, Epilogue):
                raise MissingFile(field)
            # Other fields and files, and their data, are skipped.
    raise MissingFile(field)


def _file_data(decoder: MultipartDecoder, source: Iterator[bytes]) -> Iterator[bytes]:
    while True:
        while not isinstance(event := decoder.next_event(), NeedData):
            if isinstance(event, Data):
                if event.data:
                    yield event.data
                if not event.more_data:
                    return
            elif isinstance(event, Epilogue):
                return
        chunk = next(source, None)
        if chunk is None:  # the body ended inside the file: what arrived is kept; the probe judges it
            return
        decoder.receive_data(chunk)
