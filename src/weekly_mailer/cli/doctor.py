"""``doctor``: check the configuration and say what to fix."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from urllib.parse import urlsplit

import click

from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.config import Settings
from weekly_mailer.errors import WeeklyMailerError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass
class Finding:
    level: str  # "ok", "warn" or "fail"
    what: str


def check(settings: Settings) -> list[Finding]:
    """Every check, in order; none raises."""
    out: list[Finding] = []
    if not settings.secret_key:
        out.append(Finding("fail", "secret_key is empty: run `weekly-mailer init` to generate one"))
    elif len(settings.secret_key) < 32:
        out.append(Finding("warn", "secret_key is short: use 32 or more random characters"))
    else:
        out.append(Finding("ok", "secret_key is set"))

    database = _check_database(settings)
    out.append(database)
    if database.level == "ok":
        out.extend(_list_health(settings))
    out.append(_check_backend(settings))
    out.append(_pacing(settings, database_ok=database.level == "ok"))
    out.extend(_editors(settings))

    base = urlsplit(settings.base_url)
    if base.scheme != "https" and base.hostname not in LOOPBACK:
        out.append(
            Finding(
                "warn", f"base_url {settings.base_url} is not https: mail clients may flag links"
            )
        )
    elif base.hostname in LOOPBACK:
        out.append(
            Finding("warn", "base_url points at this machine: readers cannot open links in mail")
        )
    else:
        out.append(Finding("ok", f"base_url {settings.base_url}"))

    domain = settings.from_address.rsplit("@", 1)[-1].rstrip(">").strip().lower()
    if domain in ("localhost", "example.org", "example.com", "localhost.localdomain"):
        out.append(Finding("warn", f"from_address uses the placeholder domain {domain!r}"))
    else:
        out.append(Finding("ok", f"from_address {settings.from_address}"))

    out.extend(_message_findings(settings))

    source = settings.article_source
    if not source:
        out.append(Finding("warn", "article_source is empty: the daemon has nothing to send"))
    elif urlsplit(source).scheme in ("http", "https"):
        out.append(Finding("ok", f"article_source is a URL ({source})"))
    elif not Path(source).exists():
        out.append(Finding("fail", f"article_source {source!r} does not exist"))
    else:
        out.append(Finding("ok", f"article_source {source}"))

    if settings.unsubscribe_mailto:
        out.append(
            Finding(
                "ok",
                f"unsubscribe_mailto {settings.unsubscribe_mailto}: requests sent there are "
                "honoured by `weekly-mailer bounces ingest MAILDIR` (run it from cron)",
            )
        )

    if settings.bounce_address:
        verp = (
            "VERP on: bounces come back tagged with their delivery"
            if settings.verp
            else ("VERP off (verp = false)")
        )
        out.append(Finding("ok", f"bounce_address {settings.bounce_address}: {verp}"))

    if settings.bounce_trust == "any":
        out.append(
            Finding(
                "warn",
                'bounce_trust = "any": any report believed, so anyone can bounce or unsubscribe '
                "a reader and move the list-health rates (signed: only reports tied to our mail)",
            )
        )

    if settings.templates_dir and not Path(settings.templates_dir).is_dir():
        out.append(Finding("fail", f"templates_dir {settings.templates_dir!r} is not a folder"))

    out.extend(_dkim_findings(settings))
    out.extend(_bounce_mailbox(settings))
    out.extend(_webhook_findings(settings))
    out.extend(_block_findings(settings))
    out.extend(_mail_world(settings))
    return out


RESERVED_SUFFIXES = (".localhost", ".test", ".example", ".invalid", ".local", ".localdomain")
RESERVED_DOMAINS = ("example.com", "example.org", "example.net", "localhost")


def _reserved(name: str) -> bool:
    """A name under a domain RFC 2606 / RFC 6761 reserve, which nobody can own."""
    name = name.lower().rstrip(".")
    return any(name == d or name.endswith("." + d) for d in RESERVED_DOMAINS) or any(
        name.endswith(s) or name == s[1:] for s in RESERVED_SUFFIXES
    )


def _message_findings(settings: Settings) -> list[Finding]:
    """What readers' providers see of us beyond DNS: the EHLO name, the List-Id, the postal
    address."""
    from weekly_mailer.config_checks import POSTAL_ADDRESS_MISSING, helo_problem

    out: list[Finding] = []
    if urlsplit(settings.backend_url).scheme in ("smtp", "smtps"):
        name = settings.helo_name
        problem = helo_problem(name)
        where = "smtp_helo_name" + (
            "" if settings.smtp_helo_name else " (unset: the host's fully qualified name)"
        )
        if problem:
            out.append(
                Finding(
                    "fail",
                    f"{where}: EHLO {problem}; set smtp_helo_name to this host's public name "
                    "(its A record and PTR should agree), e.g. mail.example.org, or an address "
                    "literal like [192.0.2.1]",
                )
            )
        else:
            out.append(Finding("ok", f"smtp_helo_name: EHLO {name}"))

    list_id = settings.list_id.lower().rstrip(".")
    domain = settings.from_address.rsplit("@", 1)[-1].rstrip(">").strip().lower()
    if _reserved(list_id):
        out.append(
            Finding(
                "warn",
                f"list_id {settings.list_id!r} is under a reserved name nobody owns: set "
                f"list_id to a name under your own domain, e.g. weekly.{domain} (RFC 2919)",
            )
        )
    elif list_id != domain and not list_id.endswith("." + domain):
        out.append(
            Finding(
                "warn",
                f"list_id {settings.list_id!r} is not under the From domain {domain!r}: "
                f"filters trust a List-Id under the sender's domain; e.g. weekly.{domain}",
            )
        )
    else:
        out.append(Finding("ok", f"list_id {settings.list_id}"))

    if not settings.postal_address:
        out.append(Finding("warn", POSTAL_ADDRESS_MISSING))
    return out


def _mail_world(settings: Settings) -> list[Finding]:
    """The pre-flight's checks (relay, DNS, one-click, this week's message); none for a backend
    that reaches no mailbox provider."""
    from weekly_mailer import preflight

    if not preflight.is_smtp(settings):
        return []
    skeleton, why = _this_weeks_skeleton(settings)
    checks = preflight.run_checks(settings, skeleton=skeleton)
    out = [Finding(c.level, c.what) for c in checks]
    if why:
        out.append(Finding("warn", f"message: this week's issue not checked ({why})"))
    return out


def _this_weeks_skeleton(settings: Settings) -> tuple[bytes | None, str]:
    """This week's issue as it will go (stored, or composed now as the daemon would)."""
    from sqlalchemy.exc import SQLAlchemyError

    from weekly_mailer import issues
    from weekly_mailer.clock import utcnow
    from weekly_mailer.store.db import Database

    try:
        with Database(settings) as db:
            with db.sessions.begin() as session:
                look = issues.look_at_week(session, settings, now=utcnow())
                if look.existing is not None:
                    issue = issues.get_issue(session, look.existing.id)
                    return issue.skeleton or None, "" if issue.skeleton else "nothing stored"
            plan = issues.plan_week(look, settings, scheduled=True)
    except (WeeklyMailerError, SQLAlchemyError) as exc:
        return None, " ".join(str(exc).split())[:200]
    return (plan.composed.skeleton, "") if plan.composed is not None else (None, "no article")


def _webhook_findings(settings: Settings) -> list[Finding]:
    from weekly_mailer.bounces.webhooks.service import config_notes

    return [Finding(level, text) for level, text in config_notes(settings)]


def _block_findings(settings: Settings) -> list[Finding]:
    """A line per receiving domain that blocked us in the last 24 hours, and per pause in
    force; nothing when the database cannot be read (its own check says why)."""
    from weekly_mailer.bounces.report import pauses_in_force, recent_blocks
    from weekly_mailer.clock import utcnow
    from weekly_mailer.store.db import Database

    now = utcnow()
    try:
        db = Database(settings)
    except WeeklyMailerError:
        return []
    try:
        with db.sessions() as session:
            blocks = recent_blocks(session, now=now, hours=24)
            pauses = pauses_in_force(session, now=now)
    except Exception:  # noqa: BLE001 - doctor reports, it never fails on a read
        return []
    finally:
        db.close()
    out = [
        Finding(
            "warn",
            f"blocked: {b.blocks} at {b.domain} in the last 24 hours (latest: {b.reason}); "
            "check SPF, DKIM, DMARC and the sending IP's block-list entries",
        )
        for b in blocks
    ]
    out.extend(Finding("warn", p.line()) for p in pauses)
    return out


def _dkim_findings(settings: Settings) -> list[Finding]:
    """One line per configured DKIM key (RSA, Ed25519), or what is missing."""
    from weekly_mailer.delivery.dkim import load_private_key
    from weekly_mailer.errors import ConfigError

    domain = settings.dkim_domain
    rsa = (settings.dkim_selector, settings.dkim_key_file)
    ed = (settings.dkim_ed25519_selector, settings.dkim_ed25519_key_file)
    out: list[Finding] = []
    keys: list[tuple[str, str, str, str]] = []
    if any(rsa) or (domain and not any(ed)):
        if domain and all(rsa):
            keys.append(("RSA", "dkim_key_file", *rsa))
        else:
            out.append(
                Finding("fail", "DKIM needs all of dkim_domain, dkim_selector and dkim_key_file")
            )
    if any(ed):
        if domain and all(ed):
            keys.append(("Ed25519", "dkim_ed25519_key_file", *ed))
        else:
            out.append(
                Finding(
                    "fail",
                    "DKIM Ed25519 needs all of dkim_domain, dkim_ed25519_selector and "
                    "dkim_ed25519_key_file",
                )
            )
    for kind, name, selector, path in keys:
        key = Path(path)
        if not key.is_file():
            out.append(Finding("fail", f"{name} {str(key)!r} does not exist"))
            continue
        try:
            load_private_key(key.read_bytes(), where=f"{name} {str(key)!r}")
        except ConfigError as exc:
            out.append(Finding("fail", str(exc)))
            continue
        out.append(Finding("ok", f"DKIM signing ({kind}) as {selector}._domainkey.{domain}"))
    return out


def _check_database(settings: Settings) -> Finding:
    from weekly_mailer.store.db import Database

    try:
        Database(settings).close()
    except WeeklyMailerError as exc:
        return Finding("fail", f"database: {exc}")
    return Finding("ok", "database is reachable and migrated")


def _list_health(settings: Settings) -> list[Finding]:
    """Whether the list-health guard holds the weekly send (a hold is something to fix)."""
    from sqlalchemy.exc import SQLAlchemyError

    from weekly_mailer import issues
    from weekly_mailer.clock import utcnow
    from weekly_mailer.store.db import Database

    try:
        with Database(settings) as db, db.sessions.begin() as session:
            issues.held(session, settings, now=utcnow())  # as the daemon's next check would
            holds = [(h.send_week, h.reason) for h in issues.active_holds(session)]
    except (WeeklyMailerError, SQLAlchemyError) as exc:
        return [Finding("warn", f"list health: cannot read the holds ({exc})".splitlines()[0])]
    if not holds:
        return [
            Finding(
                "ok",
                f"list health: the weekly send is not held (complaint_rate_limit "
                f"{settings.complaint_rate_limit:.2%}, bounce_rate_limit "
                f"{settings.bounce_rate_limit:.2%})",
            )
        ]
    return [
        Finding(
            "fail",
            f"the weekly send is HELD from the week of {week} on: {reason}; see "
            f"docs/operations.md, then `weekly-mailer issues release {week}`",
        )
        for week, reason in holds
    ]


def _pacing(settings: Settings, *, database_ok: bool) -> Finding:
    """The pace in force: send_rate, daily_quota and the warm-up (its day, from the database)."""
    parts = [f"send_rate {settings.send_rate:g}/s" if settings.send_rate else "send_rate unlimited"]
    if settings.daily_quota:
        parts.append(f"daily_quota {settings.daily_quota:,} per rolling 24 hours")
    if settings.warmup_start:
        warm = f"warm-up from {settings.warmup_start:,} x{settings.warmup_factor:g} a sending day"
        state = None
        if database_ok:
            from weekly_mailer.store.db import Database
            from weekly_mailer.store.outbox.pacing import warmup_state

            try:
                with Database(settings) as db, db.sessions.begin() as session:
                    state = warmup_state(session)
            except WeeklyMailerError:
                state = None
        if state is None:
            warm += " (not started)"
        elif state[2]:
            warm += f" (over: day {state[0] + 1} covered the list)"
        else:
            warm += f" (day {state[0] + 1}: {state[1]:,} issue copies)"
        parts.append(warm)
    if settings.daily_quota and settings.warmup_start:
        parts.append("the smaller wins")
    return Finding("ok", "pacing: " + ", ".join(parts))


def _bounce_mailbox(settings: Settings) -> list[Finding]:
    """With bounce_mailbox: it answers, logs in and opens its folder (nothing is read)."""
    if not settings.bounce_mailbox:
        return []
    from weekly_mailer.bounces.mailbox import open_box
    from weekly_mailer.words import plural

    try:
        box = open_box(settings)
    except WeeklyMailerError as exc:
        return [Finding("fail", str(exc))]
    try:
        count = len(box.keys())
        idle = box.wait(0, threading.Event()) is not None
    except WeeklyMailerError as exc:
        return [Finding("fail", str(exc))]
    finally:
        box.close()
    how = "IMAP IDLE: `run` reads reports as they arrive" if idle else (
        f"`run` reads it every {settings.bounce_poll_seconds:g} s"
    )  # fmt: skip
    there = plural(count, "message")
    return [Finding("ok", f"bounce mailbox {box.key}: logged in, {there} there; {how}")]


PLACEHOLDER_DOMAINS = ("localhost", "example.org", "example.com", "localhost.localdomain")


def _editors(settings: Settings) -> list[Finding]:
    """The editors' proofs and approval. What cannot work at all (``approval`` without editors
    or with ``proof_hours = 0``, an editor that is no address) is refused when the settings
    load, naming the key; what is left here works, but maybe not as meant."""
    if not settings.editors:
        return []
    names = ", ".join(settings.editors)
    if settings.proof_hours <= 0:
        return [
            Finding(
                "warn",
                f"editors are set ({names}) but proof_hours = 0: no proof goes out, "
                "nobody sees the issue before it is sent",
            )
        ]
    out = [
        Finding(
            "ok",
            f"editors {names}: a [Proof] {settings.proof_hours:g} hours before each send, "
            f"approval {settings.approval}",
        )
    ]
    for editor in settings.editors:
        domain = editor.rsplit("@", 1)[-1].rstrip(">").strip().lower()
        if domain in PLACEHOLDER_DOMAINS:
            out.append(Finding("warn", f"editor {editor} uses the placeholder domain {domain!r}"))
    if settings.approval == "none":
        return out
    host = urlsplit(settings.base_url).hostname
    if host in LOOPBACK:
        out.append(
            Finding(
                "warn",
                f"approval = {settings.approval}: the proof's approve and veto links point at "
                f"base_url {settings.base_url}, which editors cannot open from their mail "
                "(`issues approve` / `issues veto` still work)",
            )
        )
    if settings.approval == "required" and settings.grace_hours <= 0:
        out.append(
            Finding(
                "warn",
                "approval = required with grace_hours = 0: an approval that comes after the "
                "send time is too late, and the week is recorded as missed",
            )
        )
    return out


def _check_backend(settings: Settings) -> Finding:
    from weekly_mailer.delivery import resolve_backend

    try:
        backend = resolve_backend(settings)
        backend.close()
    except WeeklyMailerError as exc:
        return Finding("fail", f"backend: {exc}")
    scheme = urlsplit(settings.backend_url).scheme
    if scheme in ("file", "console", "memory"):
        return Finding("warn", f"backend_url uses {scheme}://: nothing reaches real readers")
    return Finding("ok", f"backend {scheme}:// resolved")


@click.command()
@pass_app
def doctor(app: AppContext) -> None:
    """Check the configuration and the mail world, and say what to fix (exit code 1 when
    something must be fixed). One line per check: ok, warn or FAIL, a failure with its fix.

    It warns on a list_id under a reserved name (.localhost, .test, .example, .invalid,
    example.com/org/net) or not under the From domain, and on an empty postal_address
    (CAN-SPAM requires a physical postal address in US commercial mail).

    \b
    With an smtp:// or smtps:// backend it also checks what mailbox providers will see
    (docs/preflight.md), DNS through dns_resolver or the system's resolver:
      DKIM       each selector's TXT record at <selector>._domainkey.<dkim_domain>
                 holds our public key (RSA and Ed25519)
      SPF        the envelope domain has one valid record, at most 10 DNS lookups, no +all
      DMARC      _dmarc.<From domain> (or its organisational domain) exists, is valid,
                 and DKIM d= and the envelope domain are aligned (adkim/aspf)
      bounces    the envelope domain has an MX (or an address): bounces come back
      greeting   smtp_helo_name (default: the host's fully qualified name) is no
                 localhost, bare name or unbracketed IP address ([192.0.2.1] is fine)
      relay      it answers, EHLO, STARTTLS or smtps with a verified certificate, AUTH,
                 our MAIL FROM accepted; then RSET and QUIT: nothing is sent
      one-click  POST base_url/unsubscribe/<probe token> answers 2xx (changes nothing)
      message    this week's HTML under 102 KB (Gmail clips beyond); List-Unsubscribe,
                 List-Unsubscribe-Post (and Feedback-ID) present and DKIM-signed
    """
    findings = check(app.settings)
    marks = {
        "ok": click.style("ok  ", fg="green"),
        "warn": click.style("warn", fg="yellow"),
        "fail": click.style("FAIL", fg="red"),
    }
    for f in findings:
        click.echo(f"{marks[f.level]}  {f.what}")
    failed = sum(f.level == "fail" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    click.echo(f"{failed} to fix, {warned} warnings.")
    if failed:
        raise SystemExit(1)


def register(main: click.Group) -> None:
    main.add_command(doctor)
