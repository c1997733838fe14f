"""Keep credentials out of MLflow params, tags and artifacts.

Three rules, applied to anything the tracker sends to MLflow:

* a flattened config key whose name looks like a credential (``password``,
  ``token``, ``secret``, ``key``, ``credential``, ...) has its value replaced
  by :data:`MASK`;
* any value that contains the value of a credential-looking environment
  variable (``AWS_SECRET_ACCESS_KEY``, ``MLFLOW_TRACKING_PASSWORD``, ...) has
  that part replaced too, wherever it appears;
* a URI with a password (``http://user:pass@host``) loses the password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
# Words that mark a key as a credential when they appear as one part of its name
# (parts are split at dots, underscores, dashes and camelCase humps).
SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "pass", "passphrase", "token", "secret", "secrets", "key",
    "apikey", "credential", "credentials", "auth", "authorization", "cookie",
})  # fmt: skip
_SPLIT = re.compile(r"[._\-/\s]+|(?<=[a-z0-9])(?=[A-Z])")
_URI_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@")
MIN_ENV_SECRET = 6  # shorter values would mask ordinary words and numbers


def looks_secret(key: str) -> bool:
    """True if a (dotted) key names a credential: ``aws.secret_access_key``, ``apiToken``."""
    parts = [p.lower() for p in _SPLIT.split(str(key)) if p]
    return any(part in SECRET_WORDS for part in parts)


def env_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of credential-looking environment variables, longest first."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if looks_secret(k) and len(v) >= MIN_ENV_SECRET}
    return sorted(values, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with URI passwords and the values of secret environment variables masked."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    for value in env_secrets(environ):
        text = text.replace(value, MASK)
    return text


def mask_config(flat: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict:
    """A flattened config (``{"a.b": value}``) safe to log: secret keys and values masked."""
    masked: dict[str, Any] = {}
    for key, value in flat.items():
        if looks_secret(key) and value not in (None, ""):
            masked[key] = MASK
        elif isinstance(value, str):
            masked[key] = redact(value, environ)
        else:
            masked[key] = value
    return masked
