"""The placeholder markers left in the composed issue and filled per recipient.

Markers are plain ASCII (``@``, capitals, ``_``): premailer, lxml and quoted-printable leave
them alone (unlike ``{{ var }}``, whose spaces premailer URL-encodes inside ``href``). The text
``@@WM`` is reserved: an article that contains it is refused.
"""

from __future__ import annotations

RESERVED = "@@WM"

NAME = "@@WM_NAME@@"
EMAIL = "@@WM_EMAIL@@"
UNSUBSCRIBE_URL = "@@WM_UNSUBSCRIBE_URL@@"
MANAGE_URL = "@@WM_MANAGE_URL@@"  # the reader's own page (web/manage.py)
BODY_MARKERS = (NAME, EMAIL, UNSUBSCRIBE_URL, MANAGE_URL)

# In the header block of the skeleton only.
TO = "@@WM_TO@@"
DATE = "@@WM_DATE@@"
MESSAGE_ID = "@@WM_MESSAGE_ID@@"
LIST_UNSUBSCRIBE = "@@WM_LIST_UNSUBSCRIBE@@"
HEADER_MARKERS = (TO, DATE, MESSAGE_ID, LIST_UNSUBSCRIBE)


class Markers:
    """What templates see as ``ph``: ``ph.name``, ``ph.email``, ``ph.unsubscribe_url``,
    ``ph.manage_url``."""

    name = NAME
    email = EMAIL
    unsubscribe_url = UNSUBSCRIBE_URL
    manage_url = MANAGE_URL
