"""Email delivery: the provider contract, MIME building, pacing, and one module per provider."""
