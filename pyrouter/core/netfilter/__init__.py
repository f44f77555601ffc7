"""Netfilter in userspace: hooks with verdicts (hooks.py), nftables-syntax rulesets
(nft_parse.py -> nft_compile.py), the packet view plugins get (view.py) and the
reject senders (reject.py).

Follows include/linux/netfilter.h and net/netfilter/core.c: five hooks per family,
entries run in priority order, verdicts with the kernel's meanings.  Sans-IO like
the rest of core: time comes in as ``now``; nothing here reads a clock.
"""
