"""The overlay doctor's judgement (diag/overlay_check.py): node views against the control plane."""

from __future__ import annotations

import copy

from boxnet.diag.overlay_check import ControlPlane, check_network, tunnels

KEYS = {"n1": "A" * 43 + "=", "n2": "B" * 43 + "=", "n3": "C" * 43 + "="}


def _control(encrypted: bool = False) -> ControlPlane:
    nodes = {n: {"hostname": f"h{n[1]}", "addr": f"198.18.0.{n[1]}", "role": "manager", "alive": True}
             for n in ("n1", "n2", "n3")}  # fmt: skip
    endpoints = {"net": [{"node": n, "vtep": f"198.18.0.{n[1]}", "mac": f"02:42:0a:00:01:0{n[1]}",
                          "ipv4": f"10.0.1.{n[1]}", "name": f"web.{n[1]}"} for n in ("n1", "n2", "n3")]}  # fmt: skip
    wireguard = {n: {"public_key": KEYS[n], "endpoint": f"198.18.0.{n[1]}:51820", "address": f"100.64.0.{n[1]}"}
                 for n in ("n1", "n2", "n3")}  # fmt: skip
    return ControlPlane(nodes, {"net": {"name": "front", "vni": 4097, "encrypted": encrypted}}, endpoints, wireguard)


def _view(node: str, encrypted: bool = False) -> dict:
    others = [n for n in ("1", "2", "3") if n != node[1]]
    vtep = "100.64.0.{}" if encrypted else "198.18.0.{}"
    entries = [{"Mac": f"02:42:0a:00:01:0{n}", "Ip": f"10.0.1.{n}", "Vtep": vtep.format(n)} for n in others]
    peers = [{"PublicKey": KEYS[f"n{n}"], "Endpoint": f"198.18.0.{n}:51820", "AllowedIps": f"100.64.0.{n}/32",
              "LatestHandshake": 990, "Received": 1, "Sent": 1} for n in others]  # fmt: skip
    return {
        "NodeID": node, "Hostname": f"h{node[1]}", "UnderlayDevice": "eth0", "UnderlayMtu": 1500, "Time": 1000,
        "Networks": [{"Id": "net", "Name": "front", "Vni": 4097, "Encrypted": encrypted, "Vxlan": "vx-net",
                      "VxlanState": "UNKNOWN", "VxlanMtu": 1370 if encrypted else 1450, "Bridge": "ov-net",
                      "BridgeMtu": 1370 if encrypted else 1450, "WireGuard": "bxwg", "Sealed": encrypted,
                      "Entries": entries}],
        "WireGuard": {"Interface": "bxwg", "State": "UNKNOWN", "Port": 51820, "Peers": peers} if encrypted else None,
        "Probes": [{"Node": f"n{n}", "Address": f"198.18.0.{n}", "Path": "underlay", "Size": 1472, "Answered": True,
                    "Detail": "answered"} for n in others],
    }  # fmt: skip


def _views(encrypted: bool = False) -> dict[str, dict]:
    return {n: _view(n, encrypted) for n in ("n1", "n2", "n3")}


def test_a_consistent_overlay_has_no_problem_and_every_tunnel_is_ok() -> None:
    for encrypted in (False, True):
        control, views = _control(encrypted), _views(encrypted)
        assert check_network(control, "net", views, {}) == []
        found = tunnels(control, views)
        assert len(found) == 6 and {t["State"] for t in found} == {"ok"}


def test_missing_stale_and_misdirected_entries_are_named_on_their_node() -> None:
    control, views = _control(), _views()
    entries = views["n2"]["Networks"][0]["Entries"]
    entries.remove(next(e for e in entries if e["Ip"] == "10.0.1.3"))
    entries.append({"Mac": "02:42:0a:00:01:09", "Ip": "10.0.1.9", "Vtep": "198.18.0.7"})
    views["n3"]["Networks"][0]["Entries"][0]["Vtep"] = "198.18.0.2"
    lines = [f"{p.node}: {p.problem}" for p in check_network(control, "net", views, {})]
    assert lines == [
        "h2: vx-net has no entry for 10.0.1.3 (web.3 on h3): packets to it are lost",
        "h2: vx-net keeps an entry for 10.0.1.9 at 198.18.0.7 (no node of the swarm) that no endpoint holds any "
        "more: a stale entry (moby#33789)",
        "h3: vx-net sends 10.0.1.1 (web.1 on h1) to 198.18.0.2 as 02:42:0a:00:01:01, but it is at 198.18.0.1 as "
        "02:42:0a:00:01:01",
    ]
    states = {(t["From"], t["To"]): t["State"] for t in tunnels(control, views)}
    assert states[("h2", "h3")] == "missing 1 of 1" and states[("h3", "h1")] == "missing 1 of 1"


def test_mtu_too_large_uneven_or_narrower_on_the_path() -> None:
    control, views = _control(), _views()
    views["n1"]["Networks"][0]["VxlanMtu"] = 1500
    views["n2"]["Probes"][1].update(Answered=False, Detail="no answer within 1s", SmallAnswered=True)
    views["n3"]["Probes"][0].update(Answered=False, Detail="no answer within 1s", SmallAnswered=False)
    problems = check_network(control, "net", views, {})
    text = "\n".join(f"{p.node}: {p.problem} | {p.fix}" for p in problems)
    assert "h1: VXLAN device vx-net has MTU 1500, but the underlay (eth0, MTU 1500) leaves room for 1450" in text
    assert "*: the MTU of network front differs between nodes (h1 1500, h2 1450, h3 1450)" in text
    assert "h2: a 1500-byte packet with don't-fragment set to h3 (198.18.0.3, over the underlay) got no answer" in text
    assert "h3: h1 (198.18.0.1, over the underlay) does not answer even a small echo" in text


def test_encryption_faults_per_peer() -> None:
    control, views = _control(True), _views(True)
    views["n1"]["Networks"][0]["Sealed"] = False
    peers = views["n2"]["WireGuard"]["Peers"]
    peers[0]["PublicKey"] = "D" * 43 + "="  # n1's old key
    peers[1]["LatestHandshake"] = 0
    views["n3"]["WireGuard"] = None
    lines = [f"{p.node}: {p.problem}" for p in check_network(control, "net", views, {})]
    assert "h1: VNI 4097 is not sealed in nftables: its VXLAN could leave in clear" in lines
    assert any(line.startswith("h2: no WireGuard peer with h1's current key (AAAAAAAA...)") for line in lines)
    assert "h2: no WireGuard handshake with h3 (never) though both have endpoints on the network" in lines
    assert any(line.startswith("h2: a WireGuard peer (DDDDDDDD..., 198.18.0.1:51820) belongs to no node") for line in
               lines)  # fmt: skip
    assert any(line.startswith("h3: no WireGuard interface") for line in lines)


def test_a_node_that_does_not_answer_or_lacks_the_network() -> None:
    control, views = _control(), _views()
    del views["n3"]
    views["n2"] = copy.deepcopy(views["n2"])
    views["n2"]["Networks"] = []
    problems = check_network(control, "net", views, {"n3": "could not reach node 198.18.0.3: timed out"})
    assert [(p.node, p.problem) for p in problems] == [
        ("h2", "network front is not realized here"),
        ("h3", "did not answer over the node port: could not reach node 198.18.0.3: timed out"),
    ]
    assert all(p.fix for p in problems)
