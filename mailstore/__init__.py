"""Durable, encrypted-at-rest mail storage and the IMAP server."""
