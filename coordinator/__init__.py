"""Reference coordinator for sync protocol v1 (see PROTOCOL.md): correct by default, with the
catalogued bugs available as opt-in switches so the harness can prove it catches them."""

__version__ = "0.1.0"
