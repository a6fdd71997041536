"""The REST API and the operators' pages: reads the database, writes over NATS."""
