"""The API docs (Swagger UI at /v1/ubi/docs) come from the app itself: the page names no
other host, and every script and style it references loads from the same app (issue 16)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit


class _References(HTMLParser):
    """The ``src`` and ``href`` attributes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_docs_page_names_no_other_host_and_its_assets_load(client) -> None:
    page = client.get("/v1/ubi/docs")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    # No absolute URL at all (the test client's host is "localhost": none is needed either).
    assert re.findall(r"(?:https?:)?//[\w.-]+", text) == []
    references = _References()
    references.feed(text)
    assert references.urls, text
    assert {urlsplit(u).netloc for u in references.urls} == {""}
    loaded = {}
    for url in references.urls:
        resp = client.get(url)
        assert resp.status_code == 200, url
        loaded[url.rsplit("/", 1)[-1]] = resp.get_data()
    assert {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"} <= set(
        loaded)
    assert b"SwaggerUIBundle" in loaded["swagger-ui-bundle.js"]
    # The spec it loads is this app's, and no online validator is asked about it.
    assert '"/v1/ubi/openapi.json"' in text and '"validatorUrl": null' in text
    assert client.get("/v1/ubi/docs/assets/../../openapi.json").status_code == 404
