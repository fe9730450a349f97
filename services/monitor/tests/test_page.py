"""The status page's routes serve its three files as they are, to anyone, with their types and
the headers that keep the page to its own origin; the files keep to that policy too."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from tripline.monitor.page import ASSETS, CONTENT_SECURITY_POLICY, matches, ops_routes

STATIC = Path(__file__).parents[1] / "src" / "tripline" / "monitor" / "static"
PAGE = (STATIC / "ops.html").read_text()
SCRIPTS = {path.name: path.read_text() for path in sorted(STATIC.glob("*.js"))}
EXPECTED_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=ops_routes())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://monitor"
    ) as client:
        yield client


@pytest.mark.parametrize(("path", "name"), sorted(ASSETS.items()))
async def test_each_file_is_served_as_it_is_without_a_token(
    client: httpx.AsyncClient, path: str, name: str
) -> None:
    response = await client.get(path)

    assert response.status_code == 200
    assert response.content == (STATIC / name).read_bytes()
    assert response.headers["content-type"] == EXPECTED_TYPES[Path(name).suffix]
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["etag"].startswith('"')


def test_the_policy_allows_this_origin_only_and_nothing_inline() -> None:
    directives = dict(
        (name, values)
        for name, _, values in (
            part.strip().partition(" ") for part in CONTENT_SECURITY_POLICY.split(";")
        )
    )

    for name in ("default-src", "script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert directives["img-src"] == "'self' data:"
    for name in ("object-src", "base-uri", "form-action", "frame-ancestors"):
        assert directives[name] == "'none'", name
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_every_file_of_the_folder_is_served() -> None:
    assert {path.name for path in STATIC.iterdir()} == set(ASSETS.values())


async def test_the_page_and_its_modules_load_only_files_the_routes_serve(
    client: httpx.AsyncClient,
) -> None:
    # (referring path, reference): the page's links, then each module's imports.
    references = [("/ops", ref) for ref in re.findall(r'(?:src|href)="([^"]+)"', PAGE)]
    references += [
        (f"/ops/{name}", ref)
        for name, text in SCRIPTS.items()
        for ref in re.findall(
            r'^import [^;]*? from "([^"]+)";', text, flags=re.MULTILINE | re.DOTALL
        )
    ]
    loaded = {
        urlsplit(urljoin(f"http://monitor{base}", ref)).path
        for base, ref in references
        if not ref.startswith("data:")
    }

    # Relative, as the script's API paths are: the page works behind a path prefix too.
    assert all(not ref.startswith(("/", "http:", "https:")) for _, ref in references)
    assert loaded == set(ASSETS) - {"/ops"}
    for path in loaded:
        assert (await client.get(path)).status_code == 200


def test_nothing_inline_that_the_policy_would_block() -> None:
    assert re.search(r"<script(?![^>]*\bsrc=)", PAGE) is None
    assert "<style" not in PAGE
    assert re.search(r"\s(?:style|on[a-z]+)=", PAGE) is None
    for name, text in SCRIPTS.items():
        assert re.search(r"""setAttribute\(\s*["'](?:style|on)""", text) is None, name


def test_the_script_puts_server_text_in_the_page_as_text_only() -> None:
    # Error messages and alert summaries are written by services: never parsed as HTML.
    for name, text in SCRIPTS.items():
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (name, sink)


def test_every_element_the_script_looks_up_is_on_the_page() -> None:
    wanted = {
        found
        for text in SCRIPTS.values()
        for found in re.findall(r'getElementById\("([^"]+)"\)', text)
    }
    present = set(re.findall(r'\sid="([^"]+)"', PAGE))

    assert wanted
    assert wanted <= present, wanted - present


async def test_a_browser_holding_this_version_gets_not_modified(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/ops/ops.js")
    etag = first.headers["etag"]

    for held in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get("/ops/ops.js", headers={"If-None-Match": held})
        assert again.status_code == 304, held
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    changed = await client.get("/ops/ops.js", headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200
    assert changed.content == first.content


async def test_head_answers_the_headers_of_get(client: httpx.AsyncClient) -> None:
    response = await client.head("/ops")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_only_reading_is_allowed(client: httpx.AsyncClient) -> None:
    assert (await client.post("/ops")).status_code == 405


async def test_a_trailing_slash_is_sent_to_the_page(client: httpx.AsyncClient) -> None:
    # At /ops/ the page's relative links would point one folder too deep.
    response = await client.get("/ops/")

    assert response.is_redirect
    assert urlsplit(response.headers["location"]).path == "/ops"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ("*", True),
        ('"abcd"', False),
        ("", False),
    ],
)
def test_if_none_match(header: str, expected: bool) -> None:
    assert matches(header, '"abc"') is expected
