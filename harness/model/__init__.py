"""The protocol's data model from PROTOCOL.md, shared by the client (which builds and records
it) and the checks (which judge it): the codec, change sets, the last-writer-wins replica, and
how oversized frames are kept as stubs. No I/O and no network library, so a check can be
imported, and tested, without the client's transport."""
