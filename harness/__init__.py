"""sync-chaos-harness: drives a sync protocol v1 server through faults and judges what it did.

The harness never imports the coordinator: it starts it as a process and speaks the protocol.
"""

__version__ = "0.1.0"
