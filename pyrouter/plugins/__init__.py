"""Example netfilter hook plugins (issue 7): see core/netfilter/plugins.py for the API."""
