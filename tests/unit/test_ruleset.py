"""The nft ruleset renderer, against a golden file, and its refusal of unsafe values."""

import os
import struct
from pathlib import Path

import pytest

from boxnet.firewall import bridge_rules, ruleset

GOLDEN = Path(__file__).parent / "golden" / "ruleset.nft"

NETWORKS = [
    ruleset.NetworkRules("0123456789ab" * 5 + "cdef", "boxnet0", ("172.17.0.0/16",)),
    ruleset.NetworkRules("fedcba987654" * 5 + "3210", "br-fedcba987654", ("10.1.0.0/24",), ("fd00::/64",),
                         icc=False),
    ruleset.NetworkRules("aaaaaaaaaaaa" * 5 + "aaaa", "br-aaaaaaaaaaaa", ("10.2.0.0/24",), internal=True,
                         masquerade=False),
]  # fmt: skip
PORTS = [
    ruleset.PortRule("tcp", 8080, "172.17.0.2", 80),
    ruleset.PortRule("udp", 5353, "10.1.0.2", 53, host_ip="127.0.0.1"),
    ruleset.PortRule("tcp", 8080, "fd00::2", 80),
]


def test_full_ruleset_matches_golden() -> None:
    guards = [bridge_rules.PortGuard("veth1234567", "02:42:0a:01:00:02", "10.1.0.2", "fd00::2", icc_off=True),
              bridge_rules.PortGuard("veth7654321", "02:42:ac:11:00:02", "172.17.0.2")]  # fmt: skip
    rendered = ruleset.render(ruleset.full(NETWORKS, PORTS, guards))
    if os.environ.get("BOXNET_UPDATE_GOLDEN") == "1":  # after a deliberate change: regenerate, review the diff
        GOLDEN.write_text(rendered)
    assert rendered == GOLDEN.read_text()


def test_remove_network_mirrors_add() -> None:
    for net in NETWORKS:
        added = ruleset.add_network(net)
        removed = ruleset.remove_network(net)
        assert removed[-1] == f"delete chain inet boxnet {net.chain}"
        assert sum("element" in c for c in added) == sum("element" in c for c in removed)


def test_ports_split_by_map() -> None:
    commands = ruleset.add_ports(PORTS[:2])
    assert commands == [
        "add element inet boxnet pub4_addr { 127.0.0.1 . udp . 5353 : 10.1.0.2 . 53 }",
        "add element inet boxnet pub4_any { tcp . 8080 : 172.17.0.2 . 80 }",
    ]


@pytest.mark.parametrize("bad", [
    lambda: ruleset.add_network(ruleset.NetworkRules("a" * 64, 'x" ; flush ruleset', ())),
    lambda: ruleset.add_network(ruleset.NetworkRules("not-hex", "br0", ())),
    lambda: ruleset.add_ports([ruleset.PortRule("tcp; flush", 1, "10.0.0.1", 1)]),
    lambda: ruleset.add_ports([ruleset.PortRule("tcp", 1, "10.0.0.1 ; x", 1)]),
])  # fmt: skip
def test_unsafe_values_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        bad()


def test_map_registers_match_nftables_layout() -> None:
    """Each field of a concatenation in its own 32-bit register, network byte order, zero padded."""
    any_address = ruleset.PortRule("tcp", 8080, "172.17.0.2", 80)
    assert any_address.key_registers() == bytes([6, 0, 0, 0, 0x1F, 0x90, 0, 0])
    assert any_address.value_registers() == bytes([172, 17, 0, 2, 0, 80, 0, 0])
    loopback = ruleset.PortRule("udp", 53, "10.0.0.9", 5353, host_ip="127.0.0.1")
    assert loopback.key_registers() == bytes([127, 0, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0])
    six = ruleset.PortRule("tcp", 443, "fd00::2", 8443, host_ip="2001:db8::1")
    assert six.map_name == "pub6_addr"
    assert six.key_registers() == bytes.fromhex("20010db8000000000000000000000001") + bytes([6, 0, 0, 0, 1, 0xBB, 0, 0])
    assert six.value_registers() == bytes.fromhex("fd000000000000000000000000000002") + bytes([0x20, 0xFB, 0, 0])


def test_element_batch_is_one_transaction() -> None:
    from boxnet.kernel import nfnl

    element = (b"\x06\0\0\0\x1f\x90\0\0", b"\xac\x11\0\x02\0P\0\0")
    batch = nfnl.element_batch("add", "boxnet", [("pub4_any", [element]), ("pub4_addr", [element])], 7)
    offset, types = 0, []
    while offset < len(batch):
        length, kind = struct.unpack_from("=IH", batch, offset)
        types.append(kind)
        offset += length
    new = (10 << 8) | nfnl.NFT_MSG_NEWSETELEM
    assert types == [nfnl.NFNL_MSG_BATCH_BEGIN, new, new, nfnl.NFNL_MSG_BATCH_END]
    assert offset == len(batch) and b"pub4_any\0" in batch and b"pub4_addr\0" in batch and b"\x1f\x90" in batch


def test_a_rebuild_clears_everything_but_the_user_chain() -> None:
    present = ruleset.Present(chains=frozenset({"forward", "net-0123456789ab", "user"}),
                              sets=frozenset({"bridges"}), maps=frozenset({"fwd_out"}))  # fmt: skip
    commands = ruleset.full(NETWORKS[:1], [], present=present)
    assert not any(ruleset.USER_CHAIN in c and (c.startswith(("flush", "delete"))) for c in commands)
    clearing = commands[: commands.index("add table bridge boxnet")]
    # rules first, then the maps whose verdicts name chains, then the chains
    assert clearing == ["add table inet boxnet", "flush chain inet boxnet forward",
                        "flush chain inet boxnet net-0123456789ab", "delete map inet boxnet fwd_out",
                        "delete set inet boxnet bridges", "delete chain inet boxnet forward",
                        "delete chain inet boxnet net-0123456789ab"]  # fmt: skip
    assert "add chain inet boxnet user" in commands  # made when missing; `add` leaves an existing one alone
    with pytest.raises(ValueError):
        ruleset.clear_tables(ruleset.Present(chains=frozenset({"x; flush ruleset"})))
