"""Encrypted overlays' pure parts: the sealed VNI rules, rendered from validated values, and WireGuard keys."""

from __future__ import annotations

import base64

import pytest

from boxnet.firewall import ruleset
from boxnet.kernel import wireguard


def test_a_sealed_vni_leaves_and_arrives_only_through_wireguard() -> None:
    commands = ruleset.set_sealed({4098: "bxwgabc", 4097: "bxwgabc"})
    assert commands[:2] == ["flush chain inet boxnet vxlan_sealed_out", "flush chain inet boxnet vxlan_sealed_in"]
    text = "\n".join(commands)
    # The VNI is the 24 bits after the UDP header and the VXLAN flags: bit 96 of the transport header.
    assert 'udp dport 4789 @th,96,24 4097 oifname != "bxwgabc" counter drop' in text
    assert 'udp dport 4789 @th,96,24 4098 iifname != "bxwgabc" counter drop' in text
    assert ruleset.set_sealed({}) == commands[:2]
    for bad in ({0: "bxwgabc"}, {1 << 24: "bxwgabc"}, {4097: 'x"; flush ruleset'}):
        with pytest.raises(ValueError):
            ruleset.set_sealed(bad)
    swarm = "\n".join(ruleset.swarm(["198.18.0.1"], {4097: "bxwgabc"}))
    assert "hook output priority -1" in swarm and "@th,96,24 4097" in swarm
    assert "delete chain inet boxnet vxlan_sealed_out" in ruleset.unswarm()


def test_wireguard_keys() -> None:
    private = wireguard.new_private_key()
    public = wireguard.public_key(private)
    assert len(base64.b64decode(private)) == 32 and wireguard.check_key(public) == public
    assert wireguard.public_key(private) == public and wireguard.new_private_key() != private
    for bad in ("", "abc", base64.b64encode(b"x" * 31).decode(), "not base64 !"):
        with pytest.raises(ValueError):
            wireguard.check_key(bad)


def test_the_ledger_seals_encrypted_networks_even_outside_a_swarm() -> None:
    from boxnet.drivers import registry as drivers
    from boxnet.model.network import Network

    sealed = Network("a" * 64, "secure", "overlay", "", options={"encrypted": ""},
                     driver_data={"vni": "4098", "wireguard": "bxwgabc"})  # fmt: skip
    plain = Network("b" * 64, "open", "overlay", "", driver_data={"vni": "4097"})
    assert drivers.of(sealed).sealed(sealed) == (4098, "bxwgabc") and drivers.of(plain).sealed(plain) is None
    # A daemon starting again rebuilds before it is back in the swarm (no VTEPs yet): the seal is there anyway.
    text = "\n".join(ruleset.full([], [], sealed={4098: "bxwgabc"}))
    assert "vxlan_sealed_in" in text and "@th,96,24 4098" in text and "vxlan_in" not in text.replace("sealed_in", "")
