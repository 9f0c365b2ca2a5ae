"""The HTTPS service: the JSON API of the directory today; the patients' and admins' webmail
will live here (French UI, server-rendered)."""
