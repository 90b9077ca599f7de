"""Errors are JSON in the documented shape, never HTML; request ids travel."""

from __future__ import annotations


def test_unknown_path_and_method_are_json(client) -> None:
    resp = client.get("/v1/ubi/does-not-exist")
    assert resp.status_code == 404 and resp.is_json
    assert resp.json["code"] == "not_found"
    resp = client.delete("/v1/ubi/health")
    assert resp.status_code == 405 and resp.json["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


def test_request_id_is_echoed_or_generated(client) -> None:
    assert client.get("/v1/ubi/health", headers={"X-Request-ID": "req-42"}).headers[
        "X-Request-ID"] == "req-42"
    generated = client.get("/v1/ubi/health", headers={"X-Request-ID": "bad id!"}).headers[
        "X-Request-ID"]
    assert generated and generated != "bad id!" and len(generated) == 32
    assert client.get("/v1/ubi/nope").headers["X-Request-ID"]


def test_body_larger_than_the_limit_is_413(client, settings) -> None:
    body = b"x" * (settings.max_batch * 16 * 1024 + (1 << 20) + 10)
    resp = client.post("/v1/ubi/health", data=body, content_type="application/json")
    assert resp.status_code in (405, 413)  # health is GET-only; the size check comes first
    assert resp.is_json


def test_openapi_documents_the_api(client) -> None:
    spec = client.get("/v1/ubi/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert "/v1/ubi/ready" in spec["paths"]
    assert "bearerAuth" in spec["components"]["securitySchemes"]
    docs = client.get("/v1/ubi/docs")
    assert docs.status_code == 200 and b"swagger" in docs.data.lower()


def test_metrics_page_exposes_api_histogram(client) -> None:
    client.get("/v1/ubi/health")
    page = client.get("/v1/ubi/metrics").data.decode()
    assert 'ubi_api_request_duration_seconds_count{endpoint="/v1/ubi/health"' in page


def test_text_the_database_cannot_store_is_refused_not_a_500(client, tokens, clean_db
                                                             ) -> None:
    """NUL characters and lone UTF-16 surrogates (PostgreSQL stores neither) are bad input:
    a 4xx naming where they are, never the database's error as a 500 (issue 17)."""
    from ubi.web.auth import ROLES

    headers = {"Authorization": f"Bearer {tokens('acme', *ROLES)}"}
    for document in ('{"min_team_size\\u0000": 5}', '{"weights": {"x": "\\ud800"}}'):
        resp = client.put("/v1/ubi/config/acme", data=document, headers=headers,
                          content_type="application/json")
        assert (resp.status_code, resp.json["code"]) == (400, "bad_request"), resp.json
        assert "NUL" in resp.json["message"]
    for filters in ('{"team_ids": ["core\\u0000"]}', '{"actor_ids": ["\\udc00"]}'):
        resp = client.post("/v1/ubi/query/signals", headers=headers,
                           content_type="application/json",
                           data=f'{{"tenant_id": "acme", "filters": {filters}}}')
        assert resp.status_code == 422 and "filters" in str(resp.json["errors"]), resp.json
    resp = client.post("/v1/ubi/signals/nope/feedback", headers=headers,
                       json={"verdict": "useful", "note": "\x00"})
    assert resp.status_code == 422 and "note" in resp.json["errors"], resp.json
    assert client.get("/v1/ubi/batches/b%00", headers=headers).status_code == 404
    assert client.post("/v1/ubi/signals/s%00/feedback", headers=headers,
                       json={"verdict": "useful"}).status_code == 404
