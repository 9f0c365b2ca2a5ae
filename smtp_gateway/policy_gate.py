"""The SMTP edge's use of :mod:`policy`: gather the facts, ask the pure rules, keep the
trust space current.

Facts come from the mail store (accounts, trusted domains) and the directory (is the
sender a referenced, active professional mailbox?). The rules are pure; this module is
the only place where the submission service turns the world into their arguments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from email.utils import getaddresses

from directory import lookup as directory_lookup
from mailstore.accounts import Account
from mailstore.db import Database
from mailstore.mime_headers import bytes_to_text, split_fields, unfold
from mailstore.mime_index import body_offset
from mailstore.policy_trust import trusted_domains
from policy import attachments as attachment_rules
from policy import recipients as recipient_rules
from policy import senders as sender_rules
from policy.decision import Decision
from policy.domains import TrustSpace
from policy.patients import grants_permission
from smtp_gateway.delivery import LocalRecipient

log = logging.getLogger(__name__)

#: Messages up to this size are checked on the event loop (a text message with a small
#: attachment takes well under a millisecond); bigger ones on a worker thread.
INLINE_CHECK_MAX = 64 * 1024


def _address_fields(raw: bytes, names: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(name, value)`` of the fields called ``names`` in lower case, in header order.

    The header block is split by the same lenient parser that builds the IMAP ENVELOPE
    (:mod:`mailstore.mime_headers`), so the addresses checked at submission and at the
    MTA are the ones clients show (``From :`` included, RFC 5322 §4.5.3).
    """
    wanted = {name.encode(): name for name in names}
    return [
        (wanted[name.lower()], bytes_to_text(unfold(value)))
        for name, value in split_fields(raw[: body_offset(raw)])
        if name.lower() in wanted
    ]


def header_addresses(raw: bytes, *names: str) -> list[str]:
    """The addresses of the fields called ``names`` in lower case (``from``, ``sender``:
    RFC 5322 §3.6.2), in header order, as written."""
    return [address for _, address in getaddresses([v for _, v in _address_fields(raw, names)])]


def header_addresses_by_field(raw: bytes, *names: str) -> dict[str, list[str]]:
    """:func:`header_addresses` of each of ``names``, from one reading of the header."""
    values: dict[str, list[str]] = {name: [] for name in names}
    for name, value in _address_fields(raw, names):
        values[name].append(value)
    return {name: [address for _, address in getaddresses(v)] for name, v in values.items()}


class PolicyGate:
    """Decisions for one SMTP submission service, with short-lived caches of the facts."""

    def __init__(
        self,
        db: Database,
        *,
        professional_domains: Sequence[str],
        patient_domain: str,
        limits: attachment_rules.AttachmentLimits,
        fact_ttl: float = 10.0,
        trust_reload: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.professional_domains = list(professional_domains)
        self.patient_domain = patient_domain
        self.limits = limits
        self.fact_ttl = fact_ttl
        self.trust_reload = trust_reload
        self.clock = clock
        self.space = TrustSpace.of(self.professional_domains, patient_domain)
        self._senders: dict[int, tuple[float, sender_rules.SenderAccount]] = {}
        self._task: asyncio.Task[None] | None = None

    # -- the trust space ---------------------------------------------------------------------

    def set_trusted(self, domains: frozenset[str]) -> None:
        self.space = TrustSpace.of(self.professional_domains, self.patient_domain, domains)

    async def reload_trust(self) -> None:
        self.set_trusted(await self.db.read(trusted_domains))

    async def start(self) -> None:
        """Load the trusted list now, then reload it from the database periodically (the
        list changes through `caducee trust …` in another process, or the refresher)."""
        await self.reload_trust()
        if self.trust_reload > 0:
            self._task = asyncio.create_task(self._reload_loop())

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.trust_reload)
            try:
                await self.reload_trust()
            except Exception:
                log.exception("reloading the trusted domains failed; keeping the previous list")

    async def close(self, grace: float = 0.0) -> None:
        if self._task is not None:
            self._task.cancel()

    # -- facts -------------------------------------------------------------------------------

    async def sender(self, account: Account) -> sender_rules.SenderAccount:
        hit = self._senders.get(account.id)
        now = self.clock()
        if hit is not None and hit[0] > now:
            return hit[1]

        address = account.address
        entry = await self.db.read(lambda conn: directory_lookup.mailbox_fact(conn, address))
        facts = sender_rules.SenderAccount(
            address=account.address,
            kind=sender_rules.AccountKind(account.kind),
            active=account.active,
            directory=entry,
            national_id=account.rpps,
        )
        if len(self._senders) > 10_000:
            self._senders.clear()
        self._senders[account.id] = (now + self.fact_ttl, facts)
        return facts

    # -- the checks the submission handler runs -----------------------------------------------

    async def on_mail(self, account: Account, mail_from: str) -> Decision:
        """MAIL FROM: the address is the account's, and the account is referenced."""
        facts = await self.sender(account)
        owned = sender_rules.check_envelope_sender(mail_from, facts)
        if not owned:
            return owned
        return sender_rules.check_sender_referenced(facts)

    async def on_rcpt(
        self, account: Account, address: str, local: LocalRecipient | None
    ) -> Decision:
        """RCPT TO: local recipients exist; remote ones are in the trust space."""
        facts = await self.sender(account)
        referenced = sender_rules.check_sender_referenced(facts)
        if not referenced:
            return referenced
        return recipient_rules.check_recipient(
            address, channel=recipient_rules.Channel.SUBMISSION, space=self.space,
            local=local.mailbox() if local is not None else None
        )

    async def on_data(
        self, account: Account, raw: bytes, recipients: Sequence[LocalRecipient]
    ) -> Decision:
        """DATA: From:/Sender: belong to the account; size and attachments are acceptable."""
        facts = await self.sender(account)
        owned = sender_rules.check_header_senders(
            header_addresses(raw, "from", "sender"), facts
        )
        if not owned:
            return owned
        return await self.check_content(raw, recipients)

    async def check_content(self, raw: bytes, recipients: Sequence[LocalRecipient]) -> Decision:
        """Size and attachments (:func:`policy.attachments.check_message`), at submission and
        at the MTA; a small message is checked on the event loop, a big one in a thread."""
        patients = frozenset(r.ins for r in recipients if r.kind == "patient" and r.ins)

        def check() -> attachment_rules.AttachmentReport:
            return attachment_rules.check_message(
                raw, limits=self.limits, patient_recipients=patients or None
            )

        if len(raw) <= INLINE_CHECK_MAX:
            return check().decision  # cheaper than a thread hop for ordinary mail
        return (await asyncio.get_running_loop().run_in_executor(None, check)).decision

    async def grants_patient_contact(self, account: Account) -> bool:
        """Does a message from this account open a conversation with a patient?"""
        facts = await self.sender(account)
        return grants_permission(facts.directory, sender_is_patient=False)
