"""Code every service shares: contracts, settings, logging, database models."""
