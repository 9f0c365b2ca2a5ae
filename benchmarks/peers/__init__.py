"""Real peers (Postfix, Dovecot) and Caducée started on loopback in temp dirs for benchmarks."""
