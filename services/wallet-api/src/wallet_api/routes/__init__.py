"""HTTP blueprints: health/status, wallets and transfers, API docs."""
