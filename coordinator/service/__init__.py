"""The protocol's logic and state, with no sockets: transports feed it frames and drain each
session's outbound queue. A clock is passed in, so it also runs on virtual time."""
