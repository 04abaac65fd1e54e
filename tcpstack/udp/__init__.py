"""UDP (RFC 768), sans-I/O: endpoints bound to a local port and the table that finds them.
The codec is net/udp.py; the stack (stack.py) feeds datagrams in and frames them out."""
