"""SMTP submission, the MTA listener, DKIM, and the one durable delivery path."""
