#!/usr/bin/env bash
# The whole test suite from a fresh clone: install into .venv, lint, type-check, check the
# import layers, test.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not slow"`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test,postgres]'

# Browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing Debian's chromium for the browser tests..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: /usr/bin/chromium is missing; browser tests will be skipped" >&2
    fi
fi

# axe-core (the npm package) for the accessibility test, into tests/.node (ignored by git).
if [ ! -f tests/.node/node_modules/axe-core/axe.min.js ]; then
    if command -v npm >/dev/null; then
        echo "Installing axe-core for the accessibility test..."
        mkdir -p tests/.node
        npm install --silent --no-audit --no-fund --prefix tests/.node 'axe-core@4' >/dev/null
    else
        echo "note: npm is missing; the accessibility test will be skipped" >&2
    fi
fi

# The test servers and the benchmark sink: Postfix's smtp-sink/smtp-source (preseeded "No
# configuration": nothing listens), Dovecot (IMAP, POP3), nsd, and the mail filters rspamd and
# SpamAssassin (its rules ship in the package: no sa-update), each started by the tests
# themselves with a config of their own on loopback ports.
missing=""
for pair in postfix:/usr/sbin/smtp-sink dovecot-imapd:/usr/sbin/dovecot dovecot-pop3d:/usr/lib/dovecot/pop3 nsd:/usr/sbin/nsd rspamd:/usr/bin/rspamd spamassassin:/usr/bin/spamassassin; do
    [ -e "${pair#*:}" ] || missing="$missing ${pair%%:*}"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing the test servers:$missing"
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "note: missing$missing; the tests that need them will be skipped" >&2
    fi
fi

echo "== ruff"
.venv/bin/ruff check src tests migrations benchmarks
echo "== mypy (strict, src/)"
.venv/bin/mypy
echo "== import-linter (imports point down the layers)"
.venv/bin/lint-imports
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$status"
