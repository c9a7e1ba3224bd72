"""Where the cluster's objects live in the cluster store (../shared/DESIGN.md, "Many hosts")."""

PREFIX = "/boxnet/"
CLUSTER = PREFIX + "cluster"
NODES = PREFIX + "nodes/"  # node records: written at join, then by managers
ALIVE = PREFIX + "alive/"  # one key per node, on the node's lease


def node(node_id: str) -> str:
    return NODES + node_id


def alive(node_id: str) -> str:
    return ALIVE + node_id
NETWORKS = PREFIX + "networks/"  # swarm-scope networks: the record every node realizes
NETWORK_NAMES = PREFIX + "names/networks/"  # name -> id, made in the same transaction as the network
VNIS = PREFIX + "vni/"  # VXLAN id -> network id
SUBNETS = PREFIX + "subnets/"  # subnet -> network id
IPAM = PREFIX + "ipam/"  # <network>/<address> -> owner; never on a lease (a partitioned node keeps its own)
ENDPOINTS = PREFIX + "endpoints/"  # <network>/<endpoint> -> where it is; on the owning node's lease


def ipam(network_id: str, address: str) -> str:
    return f"{IPAM}{network_id}/{address}"


def endpoint(network_id: str, endpoint_id: str) -> str:
    return f"{ENDPOINTS}{network_id}/{endpoint_id}"
SERVICES = PREFIX + "services/"  # the Docker ServiceSpec and its VIPs; its mod revision is Docker's version
SERVICE_NAMES = PREFIX + "names/services/"
TASKS = PREFIX + "tasks/"  # desired tasks, written by the leader only (under its election guard)
WG_NODES = PREFIX + "wg/nodes/"  # <node> -> its WireGuard public key, endpoint and address; on the node's lease
WG_ADDRESSES = PREFIX + "wg/addresses/"  # <address> -> the node holding it
WG_EPOCH = PREFIX + "wg/epoch"  # {"epoch": N, "at": time}: each node makes itself a new key when N grows
PORTS = PREFIX + "ports/"  # <protocol>/<published port> -> the service that publishes it on every node
STATUS = PREFIX + "status/"  # observed tasks, written by the node that runs them only
