"""``dkim keygen``: a DKIM key pair and the DNS TXT record to publish."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import click

from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.errors import ConfigError


def generate_keys(private_key: Path) -> str:
    """Write a 2048-bit RSA private key (mode 0600) and return the DNS TXT record value."""
    from dkim import dknewkey  # dkimpy drives the openssl binary for RSA keys

    if shutil.which(dknewkey.OPENSSL_BINARY) is None:
        raise ConfigError("dkim keygen: the `openssl` program is needed and was not found")
    if not private_key.parent.is_dir():
        raise ConfigError(f"dkim keygen: folder {str(private_key.parent)!r} does not exist")
    # Generate under a 077 umask so the private key is never readable by others.
    old_umask = os.umask(0o077)
    try:
        dknewkey.GenRSAKeys(str(private_key), verbose=False)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ConfigError(f"dkim keygen: openssl could not write {private_key}: {exc}") from exc
    finally:
        os.umask(old_umask)
    private_key.chmod(0o600)
    fd, dns_file = tempfile.mkstemp(suffix=".dns")
    os.close(fd)
    try:
        dknewkey.ExtractRSADnsPublicKey(str(private_key), dns_file, verbose=False)
        return Path(dns_file).read_text(encoding="ascii").strip()
    finally:
        os.unlink(dns_file)


def generate_ed25519_key(private_key: Path) -> str:
    """Write an Ed25519 private key (PEM, mode 0600) and return the DNS TXT record value
    (``v=DKIM1; k=ed25519; p=<base64 of the raw 32-byte public key>``, RFC 8463)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from weekly_mailer.delivery.dkim import public_record

    if not private_key.parent.is_dir():
        raise ConfigError(f"dkim keygen: folder {str(private_key.parent)!r} does not exist")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        private_key.chmod(0o600)  # an existing file (--force) keeps its old mode otherwise
    except OSError as exc:
        raise ConfigError(f"dkim keygen: cannot write {private_key}: {exc.strerror}") from exc
    return public_record(key)


def txt_strings(record: str) -> str:
    """The record as quoted strings of at most 255 characters (DNS's limit for one string)."""
    parts = [record[i : i + 255] for i in range(0, len(record), 255)]
    return "( " + " ".join(f'"{p}"' for p in parts) + " )" if len(parts) > 1 else f'"{record}"'


@click.group()
def dkim() -> None:
    """DKIM signing keys."""


@dkim.command()
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["rsa", "ed25519"]),
    default="rsa",
    show_default=True,
    help="rsa (RSA-2048, rsa-sha256) or ed25519 (ed25519-sha256, RFC 8463).",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the private key [default: dkim_private.pem, or dkim_ed25519.pem].",
)
@click.option(
    "--selector",
    default=None,
    help="DKIM selector (default: dkim_selector or 'mail'; for ed25519 dkim_ed25519_selector "
    "or 'mail-ed25519').",
)
@click.option("--domain", default=None, help="Signing domain (default: dkim_domain).")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@pass_app
def keygen(
    app: AppContext,
    *,
    key_type: str,
    key_file: Path | None,
    selector: str | None,
    domain: str | None,
    force: bool,
) -> None:
    """Generate a key pair and print the DNS TXT record to publish.

    Then set dkim_domain, dkim_selector and dkim_key_file in the config (for --type ed25519:
    dkim_ed25519_selector and dkim_ed25519_key_file; with both keys every message is signed
    twice); every message is signed over From, To, Subject, Date, Message-ID, List-Unsubscribe
    and List-Unsubscribe-Post.
    """
    ed = key_type == "ed25519"
    if key_file is None:
        key_file = Path("dkim_ed25519.pem" if ed else "dkim_private.pem")
    if key_file.exists() and not force:
        raise ConfigError(f"dkim keygen: {key_file} exists (pass --force to replace it)")
    settings = app.settings
    if ed:
        selector = selector or settings.dkim_ed25519_selector or "mail-ed25519"
    else:
        selector = selector or settings.dkim_selector or "mail"
    domain = domain or settings.dkim_domain
    if not domain:
        domain = settings.from_address.rsplit("@", 1)[-1].rstrip(">").strip()
    record = generate_ed25519_key(key_file) if ed else generate_keys(key_file)
    click.echo(f"Wrote the private key to {key_file} (keep it secret).")
    click.echo("Publish this DNS TXT record:")
    click.echo(f"{selector}._domainkey.{domain}. IN TXT {txt_strings(record)}")
    click.echo("Then set in weekly_mailer.toml:")
    prefix = "dkim_ed25519_" if ed else "dkim_"
    click.echo(
        f'dkim_domain = "{domain}"\n{prefix}selector = "{selector}"\n'
        f'{prefix}key_file = "{key_file.resolve()}"'
    )


def register(main: click.Group) -> None:
    main.add_command(dkim)
