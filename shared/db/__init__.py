"""Database models and engine set-up."""
