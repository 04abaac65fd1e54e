"""The deterministic network simulator and the tests that run tcpstack through it."""
