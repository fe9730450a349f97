"""What a document's bytes really are. Pure: a file in, a verdict out; no S3, no database.

The declared type must match the magic number, and the file must open as what it claims (an
image Pillow can decode, a PDF pypdf can read, not encrypted). A refusal carries a reason a
driver can act on; metadata (dimensions or page count) is returned either way it can be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any

import filetype
from PIL import Image, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError

NAMES = {"image/jpeg": "a JPEG image", "image/png": "a PNG image", "application/pdf": "a PDF"}
# Decompression bombs: a small file that decodes into gigabytes is refused.
MAX_PIXELS = 50_000_000
MIN_IMAGE_SIDE = 100


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def inspect(file: IO[bytes], declared: str) -> Verdict:
    """Check ``file`` (seekable, at any position) against the ``declared`` content type."""
    file.seek(0)
    head = file.read(8192)
    kind = filetype.guess(head)
    actual = kind.mime if kind is not None else None
    if actual != declared:
        what = NAMES.get(actual or "", "not a file type we accept")
        expected = NAMES.get(declared, declared)
        return Verdict(False, f"the file is {what}, not {expected} as declared")
    file.seek(0)
    if declared == "application/pdf":
        return _inspect_pdf(file)
    return _inspect_image(file)


def _inspect_image(file: IO[bytes]) -> Verdict:
    try:
        with Image.open(file) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return Verdict(False, f"the image is too large ({width}x{height} pixels)")
            image.verify()
        file.seek(0)
        with Image.open(file) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return Verdict(False, "the image is damaged or incomplete; take the photo again")
    metadata = {"width": width, "height": height}
    if min(width, height) < MIN_IMAGE_SIDE:
        return Verdict(False, "the image is too small to read; take a sharper photo", metadata)
    return Verdict(True, metadata=metadata)


def _inspect_pdf(file: IO[bytes]) -> Verdict:
    try:
        reader = PdfReader(file)
        if reader.is_encrypted:
            return Verdict(False, "the PDF is password-protected; upload it without a password")
        pages = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, OSError):
        return Verdict(False, "the PDF is damaged or incomplete; export it again")
    if pages == 0:
        return Verdict(False, "the PDF has no pages")
    return Verdict(True, metadata={"pages": pages})
