"""The daemon's HTTP API on a unix socket, in the Docker Engine API's paths and JSON."""
