"""The null driver: the `none` network, whose containers get a namespace with loopback only."""

from boxnet.drivers.api import Capabilities, NetworkDriver


class NullDriver(NetworkDriver):
    name = "null"
    capabilities = Capabilities(endpoints=False, user_created=False, publishes_ports=False, subnet_on_host=False,
                                embedded_dns=False)  # fmt: skip
