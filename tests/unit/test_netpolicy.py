"""Where callbacks and IVR lookups may go (engine/domain/netpolicy.py), and the aiohttp
sessions that hold to it after DNS (engine/outbound.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from engine.domain.netpolicy import OutboundPolicy, check_url, parse_cidr
from engine.errors import ClosedResourceError, DestinationRefused, InvalidInput
from engine.outbound import GuardedResolver, OutboundHttp, refused_by_policy

NOBODY = OutboundPolicy()


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("file:///etc/passwd", "must be an http or https URL, not file://"),
        ("gopher://erp.example/x", "must be an http or https URL, not gopher://"),
        ("ftp://erp.example/x", "must be an http or https URL, not ftp://"),
        ("//erp.example/x", "must be an http or https URL, not no scheme"),
        ("{base}/balance", "must be an http or https URL, not no scheme"),
        ("http:///path", "has no host"),
        ("http://erp.example:99999/x", "not a valid URL"),
        ("http://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
        ("http://127.9.9.9:8080/hook", "127.9.9.9 is a loopback address"),
        ("http://[::1]:8080/hook", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/hook", "127.0.0.1 is a loopback address"),
        ("http://[64:ff9b::a9fe:a9fe]/x", "169.254.169.254 is a link-local address"),
        ("http://[2002:a00:1::]/x", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://[fe80::1]/x", "fe80::1 is a link-local address"),
        ("http://10.0.0.1/x", "10.0.0.1 is a private address"),
        ("http://172.16.5.4/x", "172.16.5.4 is a private address"),
        ("https://192.168.1.10/x", "192.168.1.10 is a private address"),
        ("http://[fd12:3456::1]/x", "fd12:3456::1 is a private address"),
        ("http://0.0.0.0/x", "0.0.0.0 is an unspecified address"),
        ("http://[::]/x", ":: is an unspecified address"),
        ("http://224.0.0.1/x", "224.0.0.1 is a multicast address"),
        ("http://239.1.2.3/x", "239.1.2.3 is a multicast address"),
        ("http://100.64.0.1/x", "100.64.0.1 is not a globally routable address"),
        # IPv6 that the standard library of some Python versions (3.11) calls global
        ("http://[64:ff9b:1::a9fe:a9fe]/x", "169.254.169.254 is a link-local address"),
        ("http://[64:ff9b:1::7f00:1]/x", "127.0.0.1 is a loopback address"),
        ("http://[64:ff9b:1:0:a:0:100:0]/x", "64:ff9b:1:0:a:0:100:0 is a local-use NAT64"),
        ("http://[64:ff9b:1:ffff::808:808]/x", "64:ff9b:1:ffff::808:808 is a local-use NAT64"),
        ("http://[::a9fe:a9fe]/x", "169.254.169.254 is a link-local address"),
        ("http://[::10.0.0.1]/x", "10.0.0.1 is a private address"),
        ("http://[fec0::1]/x", "fec0::1 is a site-local address"),
        ("http://[4000::1]/x", "4000::1 is a reserved address"),
        ("http://240.0.0.1/x", "240.0.0.1 is a private address"),
        # allowed: global addresses, and names (judged on what they resolve to)
        ("http://93.184.216.34/hook", None),
        ("https://[2606:4700:4700::1111]/hook", None),
        ("http://[64:ff9b::5db8:d822]/hook", None),  # NAT64 of 93.184.216.34
        ("http://[64:ff9b:1::5db8:d822]/hook", None),  # the same, through a local NAT64
        ("http://[::5db8:d822]/hook", None),  # IPv4-compatible 93.184.216.34
        ("HTTPS://erp.example.com/hook?x=1", None),
        ("http://localhost:8080/hook", None),
        ("https://erp.example/balance/{acct}", None),
    ],
)
def test_which_urls_are_refused_before_dns(url: str, refusal: str | None) -> None:
    got = NOBODY.url_refusal(url)
    if refusal is None:
        assert got is None
    else:
        assert got is not None
        assert got.startswith(refusal), got


def test_a_refusal_names_the_field_and_the_way_out() -> None:
    with pytest.raises(InvalidInput) as info:
        check_url("http://169.254.169.254/", NOBODY, field="callback_url")
    assert str(info.value) == (
        "callback_url: 169.254.169.254 is a link-local address "
        "(the tenant's outbound_allow_cidrs does not include it)"
    )


def test_the_tenant_allowance_admits_exactly_its_networks() -> None:
    policy = OutboundPolicy.allowing(["127.0.0.1/32", "10.20.0.0/16", "fd00::/8"])
    assert policy.url_refusal("http://127.0.0.1:9/hook") is None
    assert policy.url_refusal("http://[::ffff:127.0.0.1]/hook") is None
    assert policy.url_refusal("http://10.20.255.1/x") is None
    assert policy.url_refusal("http://[fd00::5]/x") is None
    assert policy.url_refusal("http://127.0.0.2/hook") is not None
    assert policy.url_refusal("http://10.21.0.1/x") is not None
    assert policy.url_refusal("http://[::1]/hook") is not None
    assert policy.url_refusal("file:///etc/passwd") is not None  # the scheme rule stays


def test_policies_with_the_same_networks_are_equal() -> None:
    # OutboundHttp keeps one session per policy: the order and repeats must not matter
    a = OutboundPolicy.allowing(["10.0.0.0/8", "127.0.0.1/32", "10.0.0.0/8"])
    b = OutboundPolicy.allowing(["127.0.0.1", "10.0.0.0/8"])
    assert a == b
    assert hash(a) == hash(b)


@pytest.mark.parametrize("text", ["10.0.0.1/8", "nonsense", "10.0.0.0/33", ""])
def test_a_cidr_that_is_not_one_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_cidr(text)
    assert info.value.field == "allow_cidr"


# -- after DNS ------------------------------------------------------------------------------


class _Fixed(AbstractResolver):
    """A resolver answering fixed addresses (the production seam: GuardedResolver's inner)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_resolved_addresses_the_policy_refuses_are_dropped() -> None:
    resolver = GuardedResolver(NOBODY, _Fixed("127.0.0.1", "93.184.216.34", "10.0.0.1"))
    kept = await resolver.resolve("erp.example", 443)
    assert [r["host"] for r in kept] == ["93.184.216.34"]


async def test_a_name_resolving_only_to_refused_addresses_is_refused() -> None:
    resolver = GuardedResolver(NOBODY, _Fixed("169.254.169.254"))
    with pytest.raises(
        DestinationRefused, match=r"^erp\.example: 169\.254\.169\.254 is a link-local"
    ):
        await resolver.resolve("erp.example", 80)


async def test_localhost_resolving_to_loopback_is_refused() -> None:
    resolver = GuardedResolver(NOBODY)  # the real resolver
    with pytest.raises(DestinationRefused, match="loopback address"):
        await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
    await resolver.close()


@pytest.fixture
async def loopback_url() -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 that must never be reached; its URL path counts hits."""
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="reached")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        assert hits == []


async def test_the_session_itself_refuses_a_refused_address_given_directly(
    loopback_url: str,
) -> None:
    # what a redirect to an address would do: the resolver is skipped, the socket is not
    outbound = await OutboundHttp().start()
    try:
        with pytest.raises(aiohttp.ClientError) as info:
            await outbound.session(NOBODY).get(loopback_url + "/direct")
        refused = refused_by_policy(info.value)
        assert refused is not None
        assert "127.0.0.1 is a loopback address" in str(refused)
    finally:
        await outbound.close()


async def test_the_session_refuses_a_name_resolving_to_loopback(loopback_url: str) -> None:
    outbound = await OutboundHttp().start()
    try:
        with pytest.raises(aiohttp.ClientError) as info:
            await outbound.session(NOBODY).get(loopback_url.replace("127.0.0.1", "localhost"))
        assert refused_by_policy(info.value) is not None
    finally:
        await outbound.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["address", "name"])
async def test_a_request_the_policy_refuses_is_destination_refused_whichever_check_caught_it(
    loopback_url: str, host: str
) -> None:
    # the address literal is refused before anything is sent, the name after DNS (inside
    # aiohttp's connector): the sender sees the same DestinationRefused, saying why
    outbound = await OutboundHttp().start()
    try:
        with pytest.raises(DestinationRefused, match="is a loopback address"):
            async with outbound.request(NOBODY, "GET", loopback_url.replace("127.0.0.1", host)):
                pytest.fail("the request was sent")
    finally:
        await outbound.close()


async def test_a_request_the_policy_allows_is_sent() -> None:
    async def made(request: web.Request) -> web.Response:
        return web.Response(status=201, text="made")

    app = web.Application()
    app.router.add_post("/hook", made)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    outbound = await OutboundHttp().start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        policy = OutboundPolicy.allowing(["127.0.0.1/32"])
        async with outbound.request(policy, "POST", url, json={}) as response:
            assert response.status == 201
            assert await response.text() == "made"
    finally:
        await outbound.close()
        await runner.cleanup()


async def test_the_sessions_exist_only_while_open() -> None:
    # whoever owns it closes it once; no pool is made before start() or after close()
    outbound = OutboundHttp()
    with pytest.raises(ClosedResourceError, match="OutboundHttp is unopened"):
        outbound.session(NOBODY)
    async with outbound:
        session = outbound.session(NOBODY)
        assert outbound.session(NOBODY) is session
    assert session.closed
    with pytest.raises(ClosedResourceError, match="OutboundHttp is closed"):
        outbound.session(NOBODY)
