"""The scheduler: plans polling cycles and publishes staggered account polls.

It reads the database (accounts, discovery tasks) and never writes it; tasks
come into being through `tasks.created` and `tasks.created_batch`, which the
reconciler records. Cycle plans and their progress live in the JetStream
key-value bucket `names.scheduler_bucket`, so any replica can carry a cycle
on.
"""
