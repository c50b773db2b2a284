"""Providers' signed bounce and complaint events (Amazon SES via SNS, Mailgun, Postmark,
SendGrid), the service behind ``POST /webhooks/<provider>``:

- :mod:`.verify`: that an event really comes from the provider. Each check is a pure function
  of the request's bytes, the configured secret and the time passed in; none says which part
  failed (the caller logs the reason, the response only refuses).
- :mod:`.sns`: SNS signing certificates fetched over https from an allowed host, cached; the
  subscription confirmation.
- :mod:`.ses` and :mod:`.events`: each provider's event as findings, and the ties to our
  messages it carries (VERP addresses, our Message-IDs).
- :mod:`.apply`: the findings applied through ``bounces.intake``, each event once
  (``webhook_event``), each tied only to a delivery to the address it names.
- :mod:`.service`: ``Webhooks.check`` (verify and read a request) and ``Webhooks.apply`` (in the
  caller's transaction), with the verdict the web edge presents.
"""

from __future__ import annotations
