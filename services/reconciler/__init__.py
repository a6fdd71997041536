"""The reconciler: the only writer of the inventory database."""
