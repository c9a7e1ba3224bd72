import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from boxnet.errors import Conflict, Exhausted, InvalidArgument
from boxnet.ipam.allocator import SubnetAllocator
from boxnet.ipam.pools import choose_subnet, ula_subnet


def allocator(cidr: str = "10.0.0.0/29", gateway: str = "10.0.0.1", ip_range: str | None = None) -> SubnetAllocator:
    return SubnetAllocator(ipaddress.ip_network(cidr), ipaddress.ip_address(gateway),
                           ipaddress.ip_network(ip_range) if ip_range else None)


def test_allocates_sequentially_skipping_gateway_network_and_broadcast() -> None:
    alloc = allocator()
    got = [str(alloc.allocate()) for _ in range(5)]
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(Exhausted):
        alloc.allocate()


def test_released_address_is_not_reused_at_once() -> None:
    alloc = allocator("10.0.0.0/24")
    first = alloc.allocate()
    alloc.release(first)
    assert alloc.allocate() != first


def test_wraps_around_to_released_addresses_when_full() -> None:
    alloc = allocator()
    addresses = [alloc.allocate() for _ in range(5)]
    alloc.release(addresses[1])
    assert alloc.allocate() == addresses[1]


def test_exact_requests() -> None:
    alloc = allocator("10.0.0.0/24")
    assert str(alloc.allocate("10.0.0.50")) == "10.0.0.50"
    with pytest.raises(Conflict):
        alloc.allocate("10.0.0.50")
    with pytest.raises(Conflict):
        alloc.allocate("10.0.0.1")
    with pytest.raises(InvalidArgument):
        alloc.allocate("10.0.1.5")
    with pytest.raises(InvalidArgument):
        alloc.allocate("10.0.0.255")
    with pytest.raises(InvalidArgument):
        alloc.allocate("banana")


def test_ip_range_limits_dynamic_allocation() -> None:
    alloc = allocator("10.0.0.0/24", ip_range="10.0.0.128/30")
    assert [str(alloc.allocate()) for _ in range(4)] == ["10.0.0.128", "10.0.0.129", "10.0.0.130", "10.0.0.131"]
    with pytest.raises(Exhausted):
        alloc.allocate()


def test_ipv6() -> None:
    alloc = allocator("fd00::/64", "fd00::1")
    assert str(alloc.allocate()) == "fd00::2"


@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_never_hands_out_an_address_twice(operations: list[bool]) -> None:
    alloc = allocator("10.0.0.0/26")
    held: list[ipaddress.IPv4Address] = []
    for allocate in operations:
        if allocate or not held:
            try:
                address = alloc.allocate()
            except Exhausted:
                assert len(held) == 61
                continue
            assert address not in held and address != alloc.gateway
            held.append(address)
        else:
            alloc.release(held.pop(0))


def test_choose_subnet_skips_used_and_overlapping() -> None:
    used = [ipaddress.ip_network("172.17.0.0/16"), ipaddress.ip_network("172.18.5.0/24")]
    assert str(choose_subnet(used)) == "172.19.0.0/16"
    every = [ipaddress.ip_network(f"172.{n}.0.0/16") for n in range(17, 32)]
    assert str(choose_subnet(every)) == "192.168.0.0/20"
    with pytest.raises(Exhausted):
        choose_subnet([ipaddress.ip_network("172.16.0.0/12"), ipaddress.ip_network("192.168.0.0/16")])


def test_ula_subnet_is_unique_local() -> None:
    subnet = ula_subnet("ab" * 32)
    assert subnet.prefixlen == 64 and subnet.subnet_of(ipaddress.ip_network("fd00::/8"))
