"""HTTP routes, one module per resource; thin, the work is in the modules above."""
