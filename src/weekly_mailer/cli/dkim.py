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


def txt_strings(record: str) -> str:
    """The record as quoted strings of at most 255 characters (DNS's limit for one string)."""
    parts = [record[i : i + 255] for i in range(0, len(record), 255)]
    return "( " + " ".join(f'"{p}"' for p in parts) + " )" if len(parts) > 1 else f'"{record}"'


@click.group()
def dkim() -> None:
    """DKIM signing keys."""


@dkim.command()
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("dkim_private.pem"),
    show_default=True,
    help="Where to write the private key.",
)
@click.option("--selector", default=None, help="DKIM selector (default: dkim_selector or 'mail').")
@click.option("--domain", default=None, help="Signing domain (default: dkim_domain).")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@pass_app
def keygen(
    app: AppContext, key_file: Path, selector: str | None, domain: str | None, force: bool
) -> None:
    """Generate a key pair and print the DNS TXT record to publish.

    Then set dkim_domain, dkim_selector and dkim_key_file in the config; every message is signed
    over From, To, Subject, Date, Message-ID, List-Unsubscribe and List-Unsubscribe-Post.
    """
    if key_file.exists() and not force:
        raise ConfigError(f"dkim keygen: {key_file} exists (pass --force to replace it)")
    settings = app.settings
    selector = selector or settings.dkim_selector or "mail"
    domain = domain or settings.dkim_domain
    if not domain:
        domain = settings.from_address.rsplit("@", 1)[-1].rstrip(">").strip()
    record = generate_keys(key_file)
    click.echo(f"Wrote the private key to {key_file} (keep it secret).")
    click.echo("Publish this DNS TXT record:")
    click.echo(f"{selector}._domainkey.{domain}. IN TXT {txt_strings(record)}")
    click.echo("Then set in weekly_mailer.toml:")
    click.echo(
        f'dkim_domain = "{domain}"\ndkim_selector = "{selector}"\n'
        f'dkim_key_file = "{key_file.resolve()}"'
    )


def register(main: click.Group) -> None:
    main.add_command(dkim)
