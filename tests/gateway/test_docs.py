"""/docs and /redoc work on a machine without internet: their pages load Swagger UI's
and ReDoc's scripts, styles and icon from the gateway itself, never from a CDN."""

from __future__ import annotations

import re

import pytest

from tests.gateway.conftest import Mesh, open_gateway

# Every URL a page names in an attribute (src, href, url, spec-url) or a script string.
_URL = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.mark.parametrize(
    ("page", "kinds"),
    [
        ("/docs", {"swagger-ui-bundle.js": "javascript", "swagger-ui.css": "css", "favicon.png": "image/png"}),
        ("/redoc", {"redoc.standalone.js": "javascript", "favicon.png": "image/png"}),
    ],
)
async def test_the_docs_pages_load_their_assets_from_the_gateway_only(
    mesh: Mesh, page: str, kinds: dict[str, str]
) -> None:
    async with open_gateway(mesh.settings()) as gateway:
        response = await gateway.get(page)
        assert response.status_code == 200, response.text
        assert "text/html" in response.headers["content-type"]
        html = response.text
        assert "://" not in html, "a page that names another host is blank offline"
        urls = [a or b for a, b in _URL.findall(html)]
        assert urls, html
        assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
        assert "/openapi.json" in urls
        # Every asset the page names is served by the gateway, with its media type, and no key.
        served = {}
        for url in urls:
            asset = await gateway.get(url)
            assert asset.status_code == 200, url
            served[url.rsplit("/", 1)[-1]] = asset
    for name, kind in kinds.items():
        assert name in served, (name, urls)
        assert kind in served[name].headers["content-type"], (name, served[name].headers["content-type"])
        assert len(served[name].content) > 1000, name


async def test_swagger_ui_keeps_its_oauth2_redirect_page(mesh: Mesh) -> None:
    async with open_gateway(mesh.settings()) as gateway:
        response = await gateway.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "://" not in response.text
