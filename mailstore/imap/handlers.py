"""The command table: command name → handler."""

from __future__ import annotations

from mailstore.imap import auth_handlers as auth
from mailstore.imap import mailbox_handlers as boxes
from mailstore.imap import message_handlers as msgs
from mailstore.imap import session as core
from mailstore.imap.session import Handler

HANDLERS: dict[str, Handler] = {
    "CAPABILITY": core.capability,
    "NOOP": core.noop,
    "LOGOUT": core.logout,
    "ID": core.id_command,
    "STARTTLS": core.starttls,
    "LOGIN": auth.login,
    "AUTHENTICATE": auth.authenticate,
    "ENABLE": core.enable,
    "NAMESPACE": core.namespace,
    "IDLE": core.idle,
    "SELECT": boxes.select,
    "EXAMINE": boxes.select,
    "CREATE": boxes.create,
    "DELETE": boxes.delete,
    "RENAME": boxes.rename,
    "SUBSCRIBE": boxes.subscribe,
    "UNSUBSCRIBE": boxes.subscribe,
    "LIST": boxes.list_command,
    "LSUB": boxes.list_command,
    "STATUS": boxes.status,
    "APPEND": boxes.append,
    "CHECK": msgs.check,
    "CLOSE": msgs.close,
    "UNSELECT": msgs.unselect,
    "EXPUNGE": msgs.expunge_command,
    "SEARCH": msgs.search,
    "FETCH": msgs.fetch,
    "STORE": msgs.store,
    "COPY": msgs.copy,
    "MOVE": msgs.copy,
}
