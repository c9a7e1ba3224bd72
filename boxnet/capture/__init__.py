"""Troubleshooting: packet capture by container name (pcap in, pcapng out), decoding, filters."""
