"""pyrouter.control: the YAML config -> validated schema -> core objects.  Pure but for reading the file."""
