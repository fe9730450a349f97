"""The documents the uploads scenario sends: real JPEG, PNG and PDF files near their target size,
the same bytes from the same seed, made once. Small targets keep the test quick."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image, PdfImagePlugin
from pypdf import PdfReader

from tripline.loadtest.documents import SPECS, Spec, ensure
from tripline.loadtest.plan import Document

SMALL = (
    Spec("license-photo.jpg", "image/jpeg", 8_000),
    Spec("registration.png", "image/png", 20_000),
    Spec("insurance.pdf", "application/pdf", 8_000),
)
LONG_AGO_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09


class PdfClock:
    """Stands in for the ``time`` module that Pillow's PDF writer reads the date from, so that
    a test says when a PDF is made."""

    def __init__(self, at: float) -> None:
        self.at = at

    def gmtime(self, seconds: float | None = None) -> time.struct_time:
        return time.gmtime(self.at if seconds is None else seconds)


@pytest.fixture
def pdf_clock(monkeypatch: pytest.MonkeyPatch) -> PdfClock:
    clock = PdfClock(1_800_000_000.0)
    monkeypatch.setattr(PdfImagePlugin, "time", clock)
    return clock


def spec_of(document: Document) -> Spec:
    (spec,) = [s for s in SMALL if s.name == document.name]
    return spec


@pytest.fixture
def made(tmp_path: Path) -> list[Document]:
    return ensure(tmp_path / "documents", SMALL)


def test_each_spec_becomes_a_file_in_the_folder(made: list[Document], tmp_path: Path) -> None:
    folder = (tmp_path / "documents").resolve()
    assert [d.name for d in made] == [s.name for s in SMALL]
    assert sorted(p.name for p in folder.iterdir()) == sorted(s.name for s in SMALL)
    for document in made:
        path = Path(document.path)
        assert path.is_absolute()
        assert path.parent == folder
        assert document.content_type == spec_of(document).content_type
        assert document.size == path.stat().st_size


def test_pictures_open_as_the_type_they_declare(made: list[Document]) -> None:
    pictures = [d for d in made if d.content_type.startswith("image/")]
    assert len(pictures) == 2
    for document in pictures:
        with Image.open(document.path) as picture:
            assert Image.MIME[picture.format or ""] == document.content_type
            assert picture.mode == "RGB"
            assert picture.width == picture.height >= 64
            picture.load()


def test_the_pdf_opens_as_a_pdf_of_one_page(made: list[Document]) -> None:
    (document,) = [d for d in made if d.content_type == "application/pdf"]
    assert Path(document.path).read_bytes().startswith(b"%PDF-")
    reader = PdfReader(document.path)
    assert len(reader.pages) == 1
    assert reader.pages[0].images  # the scan is a picture on its page


def test_sizes_come_within_a_tenth_of_their_target(made: list[Document]) -> None:
    for document in made:
        target = spec_of(document).target_bytes
        assert abs(document.size - target) <= target * 0.1, (document.name, document.size)


def test_the_same_seed_makes_the_same_bytes_and_another_seed_others(
    tmp_path: Path, pdf_clock: PdfClock
) -> None:
    first = ensure(tmp_path / "a", SMALL, seed=7)
    again = ensure(tmp_path / "b", SMALL, seed=7)
    other = ensure(tmp_path / "c", SMALL, seed=8)
    for one, two, three in zip(first, again, other, strict=True):
        assert Path(one.path).read_bytes() == Path(two.path).read_bytes()
        assert Path(one.path).read_bytes() != Path(three.path).read_bytes()


def test_the_same_seed_makes_the_same_bytes_at_any_time(
    tmp_path: Path, pdf_clock: PdfClock
) -> None:
    # "The same bytes every run": also when the runs are a day apart.
    first = ensure(tmp_path / "monday", SMALL, seed=7)
    pdf_clock.at += 86_400
    second = ensure(tmp_path / "tuesday", SMALL, seed=7)
    for one, two in zip(first, second, strict=True):
        assert Path(one.path).read_bytes() == Path(two.path).read_bytes(), one.name


def test_a_second_call_keeps_the_files_it_made(made: list[Document], tmp_path: Path) -> None:
    before = {}
    for document in made:
        os.utime(document.path, ns=(LONG_AGO_NS, LONG_AGO_NS))
        before[document.name] = Path(document.path).stat()
    again = ensure(tmp_path / "documents", SMALL)
    assert again == made
    for document in again:
        after = Path(document.path).stat()
        assert after.st_mtime_ns == LONG_AGO_NS
        assert after.st_ino == before[document.name].st_ino


def test_only_missing_files_are_made(made: list[Document], tmp_path: Path) -> None:
    folder = tmp_path / "documents"
    kept = folder / "registration.png"
    os.utime(kept, ns=(LONG_AGO_NS, LONG_AGO_NS))
    (folder / "insurance.pdf").unlink()
    again = ensure(folder, SMALL)
    assert kept.stat().st_mtime_ns == LONG_AGO_NS
    assert (folder / "insurance.pdf").stat().st_mtime_ns != LONG_AGO_NS
    assert again == made
    assert not list(folder.glob("*.part"))


def test_the_real_specs_name_distinct_files_of_every_type_from_200_kb_to_2_mb() -> None:
    assert len({s.name for s in SPECS}) == len(SPECS)
    assert {s.content_type for s in SPECS} == {"image/jpeg", "image/png", "application/pdf"}
    assert all(200_000 <= s.target_bytes <= 2_000_000 for s in SPECS)
