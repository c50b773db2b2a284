"""One message's SMTP transaction on one connection of the pipelined engine (``pipelined.py``):
MAIL FROM, RCPT TO, DATA (in one write with PIPELINING), the content and the final dot, and
what the replies mean (``smtp.failure_for``, the table both engines share).

Two guards sit at the only moments that matter. Right before the content goes on the wire the
``Fence`` is asked whether the message's row is still ours; if it is not (the worker was
paused past its lease, another worker has the row) the content is not written: the connection
is dropped, which ends the transaction on the server with nothing delivered
(``LeaseLostError``). Right after the server's ``250`` to the final dot, ``Receipts`` hear of
it (the worker's journal), before anything else happens in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.delivery.backends.base import (
    BackendUnavailableError,
    Envelope,
    Fence,
    Receipts,
    SendResult,
)
from weekly_mailer.delivery.backends.smtp import failure_for
from weekly_mailer.delivery.backends.smtp_session import Lost, address_line, wire_data
from weekly_mailer.errors import DeliveryError, LeaseLostError

if TYPE_CHECKING:
    from weekly_mailer.delivery.backends.smtp_session import Connection

Result = SendResult | DeliveryError

LEASE_LOST = "not sent: this worker no longer holds the row's lease"


def commands(envelope: Envelope) -> bytes:
    """MAIL FROM, RCPT TO and DATA for one message, to go out in one write."""
    return (
        address_line(b"MAIL FROM", envelope.sender)
        + address_line(b"RCPT TO", envelope.recipient)
        + b"DATA\r\n"
    )


class Timeouts:
    """RFC 5321 §4.5.3.2's waits: MAIL and RCPT, DATA, the final dot."""

    __slots__ = ("command", "data", "data_init")

    def __init__(self, command: float, data_init: float, data: float) -> None:
        self.command, self.data_init, self.data = command, data_init, data


async def transact(
    conn: Connection,
    envelope: Envelope,
    timeouts: Timeouts,
    *,
    where: str,
    sent: bool = False,
    follow: Callable[[], bytes] = bytes,
    fence: Fence | None = None,
    receipts: Receipts | None = None,
) -> Result:
    """Send one message; ``sent``: its commands went out already (with the previous message's
    content); ``follow`` gives the bytes to write after the final dot (the next message's
    commands). Raises ``Lost`` when the connection fails."""
    data_reply: tuple[int, str] | None = None
    rcpt_reply: tuple[int, str] | None = None
    if conn.pipelining:
        if not sent:
            conn.write(commands(envelope))
        mail_reply = (await conn.reply(timeouts.command))[:2]
        if mail_reply[0] != 421:  # after 421 the server closes: no more replies come
            rcpt_reply = (await conn.reply(timeouts.command))[:2]
        if rcpt_reply is not None and rcpt_reply[0] != 421:
            data_reply = (await conn.reply(timeouts.data_init))[:2]
    else:
        mail_reply = await conn.command(
            address_line(b"MAIL FROM", envelope.sender), timeouts.command
        )
        if mail_reply[0] == 250:
            rcpt_reply = await conn.command(
                address_line(b"RCPT TO", envelope.recipient), timeouts.command
            )
            if rcpt_reply[0] in (250, 251):
                data_reply = await conn.command(b"DATA\r\n", timeouts.data_init)
    failure: DeliveryError | None = None
    if mail_reply[0] != 250:
        code, text = mail_reply
        failure = failure_for(code, text)
        if 500 <= code <= 599:  # the sender is refused: the same for every recipient
            failure = BackendUnavailableError(
                f"the SMTP server {where} refused the sender {envelope.sender}: {failure}"
            )
    elif rcpt_reply is not None and rcpt_reply[0] not in (250, 251):
        failure = failure_for(*rcpt_reply)
    elif data_reply is not None and data_reply[0] != 354:
        failure = failure_for(*data_reply, stage="data")
    if failure is not None:
        await recover(conn, failure, data_reply, timeouts)
        return failure
    if fence is not None and not fence.holds(envelope):
        conn.broken = True  # dropped mid-DATA: the server discards the transaction
        return LeaseLostError(LEASE_LOST)
    payload = envelope.data + b".\r\n" if envelope.wire_safe else wire_data(envelope.data)
    conn.write(payload + follow(), what="the message content after DATA")
    code, text, _ = await conn.reply(timeouts.data, in_doubt=True)
    conn.count += 1
    if code != 250:
        failure = failure_for(code, text, stage="data")
        conn.broken = conn.broken or code == 421
        return failure
    result = SendResult(code, text)
    if receipts is not None:
        receipts.accepted(envelope, result)
    return result


async def recover(
    conn: Connection,
    failure: DeliveryError,
    data_reply: tuple[int, str] | None,
    timeouts: Timeouts,
) -> None:
    """After a refused command: finish a DATA the server accepted anyway, then RSET; the
    connection goes on unless the server said 421 or does not answer."""
    if failure.code == 421 or (data_reply is not None and data_reply[0] == 421):
        conn.broken = True
        return
    try:
        if data_reply is not None and data_reply[0] == 354:  # RFC 2920 §3.1: empty message
            await conn.command(b".\r\n", timeouts.data)
        code, _ = await conn.command(b"RSET\r\n", timeouts.command)
    except Lost:
        code = 0  # the failure stands; this connection does not
    if code != 250:
        conn.broken = True
