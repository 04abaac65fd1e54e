"""TCP, sans-I/O: pure state machines fed segments and a clock, returning packets and events."""
