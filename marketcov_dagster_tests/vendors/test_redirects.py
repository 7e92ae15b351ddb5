"""Keys never leave for another host: a vendor that answers with a redirect to a different
origin gets a typed refusal, and the second server never sees a request, let alone a key."""

from __future__ import annotations

import json
import logging

import pytest

from marketcov_dagster.lib.vendors.base import BadPayloadError, VendorError
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.fakes.vendor_servers import FakeAlpaca, FakePolygon, FakeVendorServer, Fault
from marketcov_dagster_tests.vendors.conftest import SERVERS
from marketcov_dagster_tests.vendors.test_clients import fetch

SECRETS = (FakeAlpaca.KEY_ID, FakeAlpaca.SECRET, FakePolygon.API_KEY)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("name", ["alpaca", "binance", "polygon"])
def test_a_redirect_to_another_host_is_refused_and_carries_no_key(
    name: str, status: int, sqlite_warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with SERVERS[name]() as vendor, SERVERS[name]() as elsewhere:
        vendor.script = [Fault(status, {"Location": f"{elsewhere.url}/collect?x=1"})]
        with pytest.raises(VendorError, match=r"redirect to http://127\.0\.0\.1:\d+ refused") as e:
            fetch(name, vendor, sqlite_warehouse)
        assert elsewhere.requests == [], "the second host was called"
        assert len(vendor.requests) == 1, "a refused redirect is not retried"
    assert not isinstance(e.value, BadPayloadError)
    assert _leaks(str(e.value)) == []
    assert _leaks(caplog.text) == []
    statuses = json.dumps(sqlite_warehouse.vendor_statuses(), default=str)
    assert "redirect" in statuses and _leaks(statuses) == []


@pytest.mark.parametrize("name", ["alpaca", "polygon"])
def test_a_redirect_on_the_same_host_is_followed(name: str, sqlite_warehouse: Warehouse) -> None:
    with SERVERS[name]() as vendor:
        vendor.script = [Fault(307, {"Location": "/moved"})]
        # the second request lands on /moved, which the fake does not route: a typed rejection,
        # not a refusal of the redirect
        with pytest.raises(VendorError) as e:
            fetch(name, vendor, sqlite_warehouse)
        assert "refused" not in str(e.value)
        assert [r.path for r in vendor.requests] == [vendor.requests[0].path, "/moved"]


def test_a_redirect_loop_on_the_same_host_ends(sqlite_warehouse: Warehouse) -> None:
    server: FakeVendorServer
    with SERVERS["binance"]() as server:
        server.script = [Fault(302, {"Location": "/again"})] * 50
        with pytest.raises(VendorError, match="more than 5 redirects"):
            fetch("binance", server, sqlite_warehouse, max_attempts=1)
        assert len(server.requests) == 6


def test_polygon_next_url_never_changes_scheme(polygon_server: FakeVendorServer, sqlite_warehouse: Warehouse) -> None:
    same_host_other_scheme = polygon_server.url.replace("http://", "https://") + "/v2/aggs/next?cursor=x"
    body = {"status": "OK", "results": [], "next_url": same_host_other_scheme}
    polygon_server.script = [Fault(200, {}, json.dumps(body).encode())]
    with pytest.raises(BadPayloadError, match="configured scheme and host"):
        fetch("polygon", polygon_server, sqlite_warehouse)
    assert len(polygon_server.requests) == 1
