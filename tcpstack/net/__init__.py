"""Network layer: checksums, IPv4, IPv6, ICMP and ICMPv6 codecs. Knows nothing of connections."""
