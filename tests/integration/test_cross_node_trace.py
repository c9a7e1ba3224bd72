"""trace across nodes on a lab: to a service by name (the VIP, the backend the probe was balanced to, the VXLAN
entry and VTEP, the remote node's bridge and veth), through an encrypted network (WireGuard named with its
peer), and against real reachability: a rule on the remote node that drops the flow is found there."""

from __future__ import annotations

import json

from test_cluster_capture import ECHO, info
from test_swarm import lab_factory, running_tasks, wait_for  # noqa: F401 - the fixture


def trace(host, *args: str) -> dict:
    result = host.cli("trace", *args, "--format", "json", check=False)
    return json.loads(result.stdout)


def test_trace_follows_a_probe_to_another_node_and_names_what_it_met(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("tr", hosts=3)
    h1, h2, h3 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "--attachable", "front")
    h1.cli("network", "create", "-d", "overlay", "--opt", "encrypted", "--attachable", "secure")
    h1.cli("service", "create", "--name", "web", "--replicas", "2", "--constraint", f"node.hostname!={h1.name}",
           "--network", "front", "--network", "secure", "host", *ECHO)  # fmt: skip
    wait_for(lambda: len(running_tasks(h1, "web")) == 2, 40)
    h1.cli("run", "-d", "--name", "c", "--network", "front", "sleep", "600")
    h1.cli("network", "connect", "secure", "c")
    hostname = {info(h, "/info")["Swarm"]["NodeID"]: h.name for h in lab.hosts}
    front_id, secure_id = info(h1, "/networks/front")["Id"], info(h1, "/networks/secure")["Id"]
    tasks = running_tasks(h1, "web")
    on = {network_id: {a["Addresses"][0].split("/")[0]: hostname[t["NodeID"]] for t in tasks
                       for a in t["NetworksAttachments"] if a["Network"]["ID"] == network_id}
          for network_id in (front_id, secure_id)}  # fmt: skip
    where = on[front_id] | on[secure_id]
    # c shares both of web's networks: it has both VIPs (one per network, as Docker gives it).
    vips = [v["Addr"].split("/")[0] for v in info(h1, "/services/web")["Endpoint"]["VirtualIPs"]]
    assert len(vips) == 2
    for address in vips:
        wait_for(lambda a=address: h1.cli("exec", "c", "curl", "-s", "-m", "2", f"http://{a}/",
                                          check=False).returncode == 0, 20)  # fmt: skip

    # By service name: the VIP, the backend chosen, the tunnel to that backend's node, and its side.
    found = trace(h1, "c", "web:80")
    steps = "\n".join(found["Steps"])
    assert found["Delivered"], steps
    chosen = next(line.rsplit(" ", 1)[1] for line in found["Steps"] if "was DNATed" in line)
    assert chosen in where, (chosen, where)
    node = where[chosen]
    assert f"VXLAN vx-{front_id[:12]}" in steps and f"{chosen} is 02:42:" in steps and "in clear on the underlay" \
        in steps, steps  # fmt: skip
    assert f"on {node}: the probe arrived from the VXLAN device" in steps, steps
    assert f"on {node}: bridge ov-{front_id[:12]} -> " in steps and "in container web." in steps, steps
    other = ({h2.name, h3.name} - {node}).pop()
    assert f"on {other}: the probe arrived" not in steps, steps

    # Through the encrypted network, to a task by address: WireGuard and its peer named.
    sealed = next(iter(on[secure_id]))
    secure = trace(h1, "c", f"{sealed}:80")
    steps = "\n".join(secure["Steps"])
    assert secure["Delivered"] and "encrypted by WireGuard bxwg" in steps and ":51820 (" in steps, steps
    assert f"on {where[sealed]}: the probe arrived" in steps, steps

    # Real reachability: the remote node drops the flow; trace says so, and where.
    target = next(a for a, n in on[front_id].items() if n == h3.name)
    block = ("add table bridge tr_block; add chain bridge tr_block blocker { type filter hook forward priority 0; }; "
             f"add rule bridge tr_block blocker ip daddr {target} tcp dport 80 counter drop")
    h3.run("nft", block, check=True)
    blocked = trace(h1, "c", f"{target}:80")
    steps = "\n".join(blocked["Steps"])
    assert not blocked["Delivered"], steps
    assert f"on {h3.name}: dropped at bridge tr_block blocker" in steps and h3.name in blocked["Reason"], blocked
    h3.run("nft", "delete", "table", "bridge", "tr_block", check=True)
    assert trace(h1, "c", f"{target}:80")["Delivered"]
