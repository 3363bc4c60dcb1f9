"""Wallet domain: money values and ledger rules, free of HTTP and Redis."""
