"""The inventory's services, each run as its own process."""
