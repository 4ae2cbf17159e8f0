"""migctl: run breaking-change migrations across a SaaS platform's customer accounts."""

__version__ = "0.1.0"
