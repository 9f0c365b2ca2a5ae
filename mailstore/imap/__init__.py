"""The IMAP server (issue 5): a sans-IO protocol core and a thin asyncio shell.

Layers, from the wire inwards:

* :mod:`.framing` splits the byte stream into complete commands (literals included);
* :mod:`.lexer` and :mod:`.parser` turn a command's bytes into a typed :mod:`.commands` value;
* :mod:`.state` says which command is legal in which connection state;
* :mod:`.formatter` renders responses to bytes (RFC 3501 §9, RFC 9051 §9);
* :mod:`.session` runs command handlers over the mail store; :mod:`.server` moves bytes.
"""
