"""Precompressed siblings made at publish time: `app.js.br` and `app.js.gz` beside `app.js`.

Compressing once, when a build is published, lets every request get the
smallest encoding its client accepts without compressing anything per
request. Only text-like files of MIN_COMPRESS bytes or more are compressed;
a sibling the build brought is kept as it is, and one that would not be
smaller than the file is not made (the file itself serves as well).

Brotli runs at its highest quality, 11: measured on minified JS at about
2 s of CPU per MiB (quality 10: 0.9 s, 9: 0.13 s, for output 2% and 8-12%
larger), paid once per publish, with files compressed on several cores.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Container
from pathlib import PurePosixPath

import brotli

from shoestring.sites.files import SIBLINGS

COMPRESSIBLE = {".html", ".htm", ".css", ".js", ".mjs", ".json", ".svg", ".txt", ".xml",
                ".map", ".webmanifest", ".wasm", ".ico"}  # fmt: skip
MIN_COMPRESS = 1024  # smaller files gain nothing worth a second file
BROTLI_QUALITY = 11


def _brotli(data: bytes) -> bytes:
    encoded: bytes = brotli.compress(data, quality=BROTLI_QUALITY)
    return encoded


def _gzip(data: bytes) -> bytes:
    # mtime=0: the same file gives the same bytes, whichever release made them.
    return gzip.compress(data, compresslevel=9, mtime=0)


ENCODERS: dict[str, Callable[[bytes], bytes]] = {".br": _brotli, ".gz": _gzip}


def siblings_to_make(name: str, size: int, present: Container[str]) -> tuple[str, ...]:
    """The sibling suffixes (`.br`, `.gz`) to try for `name`: those the build did not bring.

    `present` holds the names of the build's files, in the form of `name`.
    """
    if PurePosixPath(name).suffix not in COMPRESSIBLE or size < MIN_COMPRESS:
        return ()
    return tuple(suffix for _, suffix in SIBLINGS if name + suffix not in present)


def compress(data: bytes, suffix: str) -> bytes | None:
    """`data` encoded for the sibling `suffix`; None when that is no smaller than `data`."""
    encoded = ENCODERS[suffix](data)
    return encoded if len(encoded) < len(data) else None
