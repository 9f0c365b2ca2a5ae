"""Caducée: the ``caducee`` command that wires every package together and runs them."""

__version__ = "0.1.0"
