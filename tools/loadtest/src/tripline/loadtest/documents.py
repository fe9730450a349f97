"""The documents drivers upload in the load test: real JPEG, PNG and PDF files of 200 KB to
2 MB, as phones photograph and scan identity papers. Made once per machine from a seed (the same
bytes every run) and kept in a folder; the worker checks them as it checks any upload."""

from __future__ import annotations

import io
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tripline.loadtest.plan import Document


@dataclass(frozen=True)
class Spec:
    """A document to make: its name, type and the size it should come close to."""

    name: str
    content_type: str
    target_bytes: int


SPECS: tuple[Spec, ...] = (
    Spec("license-photo.jpg", "image/jpeg", 220_000),
    Spec("insurance-scan.jpg", "image/jpeg", 1_200_000),
    Spec("registration.png", "image/png", 650_000),
    Spec("profile-photo.png", "image/png", 1_900_000),
    Spec("insurance.pdf", "application/pdf", 350_000),
    Spec("registration-scan.pdf", "application/pdf", 1_600_000),
)
# Pillow writes a PDF's dates from a struct_time: 2026-01-01T00:00:00Z.
EPOCH = time.gmtime(1_767_225_600)
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "application/pdf": "PDF"}


def picture(side: int, rng: random.Random) -> Image.Image:
    """A square picture of ``side`` pixels: a paper-like gradient under sensor noise, which
    compresses about as a photograph does."""
    noise = Image.frombytes("L", (side, side), rng.randbytes(side * side))
    paper = Image.linear_gradient("L").resize((side, side))
    grey = Image.blend(paper, noise, 0.35)
    return Image.merge("RGB", (grey, grey.rotate(90), grey.rotate(180)))


def encode(spec: Spec, side: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    # A PDF carries its dates: fixed ones keep the bytes the same on every machine and day.
    dated = {"creationDate": EPOCH, "modDate": EPOCH} if spec.content_type.endswith("pdf") else {}
    picture(side, random.Random(seed)).save(
        buffer, format=FORMATS[spec.content_type], quality=90, **dated
    )
    return buffer.getvalue()


def sized(spec: Spec, seed: int, make: Callable[[Spec, int, int], bytes] = encode) -> bytes:
    """``spec`` encoded at the side whose size comes closest to its target (bytes grow with the
    square of the side: a few rounds of proportional correction)."""
    side = 512
    data = make(spec, side, seed)
    for _ in range(4):
        if abs(len(data) - spec.target_bytes) <= spec.target_bytes * 0.1:
            break
        side = max(64, round(side * (spec.target_bytes / len(data)) ** 0.5))
        data = make(spec, side, seed)
    return data


def ensure(folder: Path, specs: Sequence[Spec] = SPECS, seed: int = 7) -> list[Document]:
    """The documents in ``folder``, made first where missing."""
    folder.mkdir(parents=True, exist_ok=True)
    documents = []
    for spec in specs:
        path = folder / spec.name
        if not path.exists():
            partial = path.with_suffix(".part")
            partial.write_bytes(sized(spec, seed))
            partial.replace(path)
        documents.append(
            Document(str(path.resolve()), spec.name, spec.content_type, path.stat().st_size)
        )
    return documents
