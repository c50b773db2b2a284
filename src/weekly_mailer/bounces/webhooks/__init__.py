"""Providers' signed bounce and complaint events (Amazon SES via SNS, Mailgun, Postmark,
SendGrid): :mod:`.verify` checks that an event really comes from the provider. Each check is a
pure function of the request's bytes, the configured secret and the time passed in; none says
which part failed (the caller logs the reason, the response only refuses)."""

from __future__ import annotations
