"""Applications the CLI serves on a tcpstack listener: echo, discard, a static HTTP server."""
