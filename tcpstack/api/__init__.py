"""The application interface: asyncio streams over tcpstack."""
