"""Running the inventory: the local demo, local processes, containers."""
