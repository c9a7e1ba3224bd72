"""The host driver: the `host` network, whose containers use the host's own namespace (no endpoint)."""

from boxnet.drivers.api import Capabilities, NetworkDriver


class HostDriver(NetworkDriver):
    name = "host"
    capabilities = Capabilities(endpoints=False, user_created=False, publishes_ports=False, subnet_on_host=False,
                                embedded_dns=False)  # fmt: skip
