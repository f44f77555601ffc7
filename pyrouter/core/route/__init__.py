"""Routing: FIB tables, routes, the flow key and lookup (Linux net/ipv4/fib_*)."""
