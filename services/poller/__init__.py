"""The poller: discovers an account's network resources through its IAM role."""
