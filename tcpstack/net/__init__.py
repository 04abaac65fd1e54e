"""Network layer: checksums, IPv4 and ICMP codecs. Knows nothing of connections."""
