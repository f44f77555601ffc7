"""pyrouter.shell: the only ring that does I/O (trio, pytun, pyroute2, structlog, os, signals)."""
