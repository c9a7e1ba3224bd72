"""boxnet: the command line, a thin client of the daemon's API."""
