"""The cluster: node identity and liveness, certificates and join tokens, the managed etcd members, and the
swarm's lifecycle (init, join, leave) over the cluster store."""
