"""Offline analysis of what a stack recorded (`--pcap` captures), for `tcpstack plot`."""
