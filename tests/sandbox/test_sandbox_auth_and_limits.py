"""Auth, scopes, store hash, paths and the fixed-window rate limit behave like BigCommerce's gateway."""
import time

import requests

RATE_HEADERS = ("X-Rate-Limit-Requests-Left", "X-Rate-Limit-Requests-Quota",
                "X-Rate-Limit-Time-Reset-Ms", "X-Rate-Limit-Time-Window-Ms")
SCOPE_BODY = {"status": 403, "title": "You don't have a required scope to access the endpoint",
              "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes", "errors": {}}


def test_missing_or_wrong_token_is_401_with_v3_body(make_store):
    _, client = make_store()
    for token in (None, "wrong"):
        resp = client.get("v2/orders", token=token)
        assert resp.status_code == 401
        body = resp.json()
        assert body["status"] == 401 and body["title"] and body["type"] and body["errors"] == {}


def test_token_without_scope_gets_403_body(make_store):
    _, client = make_store(tokens={"limited": ["store_v2_orders_read_only"]})
    assert client.get("v2/orders", token="limited").status_code == 200
    for path in ("v2/coupons", "v3/customers", "v3/catalog/products"):
        resp = client.get(path, token="limited")
        assert resp.status_code == 403 and resp.json() == SCOPE_BODY


def test_unknown_store_hash_path_and_methods(make_store):
    sandbox, client = make_store()
    resp = client.session.get(f"{sandbox.base_url}/stores/other/v2/orders", headers={"X-Auth-Token": "sandbox-token"})
    assert resp.status_code == 404 and resp.json()[0]["status"] == 404
    assert client.get("v2/orders/").status_code == 404
    assert client.get("v2/brands").status_code == 404
    assert client.get("v3/customers/").status_code == 403
    assert client.get("v3/catalog/widgets").status_code == 404
    resp = client.session.post(client.url("v2/orders"), json={}, headers={"X-Auth-Token": "sandbox-token"})
    assert resp.status_code == 405


def test_every_response_carries_the_rate_headers(make_store):
    _, client = make_store(quota=50)
    responses = [client.get("v2/orders"), client.get("v2/orders", token="bad"), client.get("v2/nothing"),
                 client.get("v2/orders", {"limit": 999}), client.get("v3/customers"), client.get("v2/orders", {"page": 99})]
    lefts = []
    for resp in responses:
        for name in RATE_HEADERS:
            assert resp.headers.get(name) is not None, (resp.status_code, name)
        assert resp.headers["X-Rate-Limit-Requests-Quota"] == "50"
        assert resp.headers["X-Rate-Limit-Time-Window-Ms"] == "30000"
        assert 0 < int(resp.headers["X-Rate-Limit-Time-Reset-Ms"]) <= 30000
        lefts.append(int(resp.headers["X-Rate-Limit-Requests-Left"]))
    assert lefts == [49, 48, 47, 46, 45, 44]


def test_quota_spent_gives_429_then_clears_after_the_window(make_store):
    sandbox, client = make_store(quota=3, window_ms=600)
    statuses = [client.get("v2/orders").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    blocked = client.get("v2/orders")
    again = client.get("v2/orders")
    assert blocked.status_code == again.status_code == 429
    assert blocked.headers["X-Rate-Limit-Requests-Left"] == "0"
    assert int(blocked.headers["X-Retry-After"]) == 1
    reset = int(again.headers["X-Rate-Limit-Time-Reset-Ms"])
    assert 0 <= reset <= 600
    time.sleep(reset / 1000 + 0.05)
    fresh = client.get("v2/orders")
    assert fresh.status_code == 200
    # A 429 does not consume quota, and a fresh window offers the whole quota at once.
    assert fresh.headers["X-Rate-Limit-Requests-Left"] == "2"
    assert sandbox.data_requests == 4


def test_requests_keep_the_connection_alive(make_store):
    sandbox, client = make_store()
    session = requests.Session()
    for _ in range(3):
        resp = session.get(client.url("v2/orders"), headers={"X-Auth-Token": "sandbox-token"})
        assert resp.status_code == 200 and int(resp.headers["Content-Length"]) == len(resp.content)
    assert len(session.get_adapter(sandbox.base_url).poolmanager.pools) == 1
