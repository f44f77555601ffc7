"""pyrouter.control: YAML config -> validated schema -> core objects (pure but for reading it)."""
