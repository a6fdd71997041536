"""The scheduler's ways out: the database (read-only) and NATS."""
