"""pyrouter: a userspace router appliance that behaves like a Linux kernel router."""

__version__ = "0.1.0"
