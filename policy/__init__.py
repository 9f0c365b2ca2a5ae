"""The rules of the trust space: pure functions over facts, returning a :class:`Decision`.

Nothing here does I/O, reads a clock or imports another Caducée package
(ARCHITECTURE.md §3); the edges (SMTP, IMAP, web) translate reason codes into replies.
"""
