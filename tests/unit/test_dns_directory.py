"""Who sees which names: scope, aliases, rotation, PTR, the containers' own domain, forwarding rules."""

import struct

from boxnet.dns import packet
from boxnet.dns.directory import Action, Directory, Registration
from boxnet.dns.redirect import render
from boxnet.runtime.files import container_resolv_conf, embedded_resolv_conf

A, B, C = "a" * 64, "b" * 64, "c" * 64


def query(name: str, qtype: int = packet.TYPE_A) -> packet.Query:
    message = packet.HEADER.pack(1, packet.FLAG_RD, 1, 0, 0, 0)
    message += packet.encode_name(packet.name_labels(name)) + struct.pack("!HH", qtype, packet.CLASS_IN)
    return packet.parse_query(message)


def addresses(resolution) -> list[str]:
    found = []
    for record in resolution.records:
        rtype, rdlength = struct.unpack_from("!H", record, 2)[0], struct.unpack_from("!H", record, 10)[0]
        rdata = record[12 : 12 + rdlength]
        found.append(".".join(map(str, rdata)) if rtype == packet.TYPE_A else rdata.hex())
    return found


def directory() -> Directory:
    d = Directory()
    d.set_network("n1", "front", ["172.18.0.0/16"], internal=False, discoverable=True)
    d.set_network("n2", "back", ["172.19.0.0/16", "fd00:1::/64"], internal=True, discoverable=True)
    d.set_network("nb", "bridge", ["172.17.0.0/16"], internal=False, discoverable=False)
    d.add(Registration.make(A, "n1", "front", "web", "webhost", ["www"], "172.18.0.2"))
    d.add(Registration.make(B, "n1", "front", "cli", B[:12], [], "172.18.0.3"))
    d.add(Registration.make(B, "n2", "back", "cli", B[:12], [], "172.19.0.3"))
    d.add(Registration.make(C, "n2", "back", "db", C[:12], ["store"], "172.19.0.4", "fd00:1::4"))
    return d


def test_every_kind_of_name_answers() -> None:
    d = directory()
    for name in ("web", "WEB", "webhost", "www", A[:12], "web.front"):
        resolution = d.resolve(B, query(name))
        assert resolution.action is Action.ANSWER and addresses(resolution) == ["172.18.0.2"], name


def test_scope_is_the_shared_networks() -> None:
    d = directory()
    assert addresses(d.resolve(B, query("db"))) == ["172.19.0.4"]  # cli shares back with db
    unseen = d.resolve(A, query("db"))  # web is on front only
    assert unseen.action is Action.ANSWER and unseen.rcode == packet.NXDOMAIN


def test_aaaa_and_nodata() -> None:
    d = directory()
    assert addresses(d.resolve(B, query("db", packet.TYPE_AAAA))) == ["fd000001000000000000000000000004"]
    nodata = d.resolve(B, query("web", packet.TYPE_AAAA))
    assert (nodata.action, nodata.rcode, nodata.records) == (Action.ANSWER, packet.NOERROR, ())
    assert d.resolve(B, query("web", packet.TYPE_MX)).records == ()


def test_one_alias_many_containers_rotates() -> None:
    d = directory()
    d.add(Registration.make(C, "n1", "front", "db", C[:12], ["www"], "172.18.0.4"))
    orders = [addresses(d.resolve(B, query("www"))) for _ in range(3)]
    assert sorted(orders[0]) == ["172.18.0.2", "172.18.0.4"]
    assert orders[0] != orders[1] and orders[0] == orders[2]
    assert d.resolve(B, query("www")).cacheable is False


def test_ptr_for_container_addresses_and_nxdomain_inside_subnets() -> None:
    d = directory()
    ptr = d.resolve(B, query(packet.reverse_name("172.18.0.2"), packet.TYPE_PTR))
    assert ptr.action is Action.ANSWER and packet.encode_name(packet.name_labels("web.front")) in ptr.records[0]
    missing = d.resolve(B, query(packet.reverse_name("172.18.0.99"), packet.TYPE_PTR))
    assert missing.rcode == packet.NXDOMAIN
    assert d.resolve(B, query(packet.reverse_name("192.0.2.8"), packet.TYPE_PTR)).action is Action.FORWARD


def test_container_domain_is_never_forwarded() -> None:
    d = directory()
    for name in ("nothere", "nothere.front", "x.y.back"):
        resolution = d.resolve(B, query(name))
        assert (resolution.action, resolution.rcode) == (Action.ANSWER, packet.NXDOMAIN), name
    assert d.resolve(B, query("example.com")).action is Action.FORWARD


def test_internal_only_containers_are_refused_forwarding() -> None:
    d = directory()
    assert d.resolve(C, query("example.com")).action is Action.REFUSE  # db: on back (internal) only
    assert d.resolve(B, query("example.com")).action is Action.FORWARD  # cli: also on front
    d.add(Registration.make(C, "nb", "bridge", "db", C[:12], [], "172.17.0.9"))
    assert d.resolve(C, query("example.com")).action is Action.FORWARD  # the default bridge is a way out


def test_default_bridge_serves_no_names_and_removal_is_immediate() -> None:
    d = directory()
    d.add(Registration.make(C, "nb", "bridge", "db", C[:12], [], "172.17.0.9"))
    d.add(Registration.make(A, "nb", "bridge", "web", "webhost", [], "172.17.0.2"))
    assert addresses(d.resolve(C, query("db"))) == ["172.19.0.4"]  # from back, not from the bridge
    d.remove(A, "n1")
    assert d.resolve(B, query("web")).rcode == packet.NXDOMAIN
    assert d.resolve(B, query(packet.reverse_name("172.18.0.2"), packet.TYPE_PTR)).rcode == packet.NXDOMAIN


def test_redirect_rules_rewrite_both_directions() -> None:
    text = render(40001, 40002)
    assert "ip daddr 127.0.0.11 udp dport 53 counter udp dport set 40001 notrack" in text
    assert "ip saddr 127.0.0.11 udp sport 40001 udp sport set 53 notrack" in text
    assert "ip saddr 127.0.0.11 tcp sport 40002 tcp sport set 53 notrack" in text
    assert text.index("flush table ip boxnet") < text.index("chain dns")


def test_resolv_conf_for_the_embedded_resolver() -> None:
    host = "nameserver 127.0.0.53\nnameserver 203.0.113.53\nsearch a.test\noptions edns0 ndots:2\n"
    assert embedded_resolv_conf(host) == "nameserver 127.0.0.11\nsearch a.test\noptions ndots:0 edns0\n"
    assert embedded_resolv_conf(host, ["b.test"], ["timeout:1"]) == (
        "nameserver 127.0.0.11\nsearch b.test\noptions ndots:0 timeout:1\n"
    )
    assert container_resolv_conf(host, ["192.0.2.1"]) == "nameserver 192.0.2.1\nsearch a.test\noptions edns0 ndots:2\n"
