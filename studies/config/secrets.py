"""Keep credentials out of MLflow params, tags, artifacts and files.

Masking works on *values*, before anything is serialized, so whatever is
written (``study.yaml``, MLflow params) always reads back:

* a key whose name looks like a credential (``password``, ``token``,
  ``secret``, ``key``, ``credential``, ...) has its value replaced by :data:`MASK`;
* a string that contains the value of a credential environment variable
  (``AWS_SECRET_ACCESS_KEY``, ``MLFLOW_TRACKING_PASSWORD``, ``*_TOKEN``, ...)
  has that part replaced, wherever it appears;
* a URI with a password (``http://user:pass@host``) loses the password.

Environment variables that describe the machine are never credentials, however
they are named: ``PWD``, ``OLDPWD``, ``HOME``, ``PATH``, ``TMPDIR``,
``VIRTUAL_ENV``, ``XDG_*``, and any variable whose value is an existing path.
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
# Environment variables of the shell and the machine, never credentials.
PLAIN_ENV = frozenset({"PWD", "OLDPWD", "HOME", "PATH", "TMPDIR", "TMP", "TEMP", "VIRTUAL_ENV"})
PLAIN_ENV_PREFIXES = ("XDG_",)
_SPLIT = re.compile(r"[._\-/\s]+|(?<=[a-z0-9])(?=[A-Z])")
_URI_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@")
MIN_ENV_SECRET = 6  # shorter values would mask ordinary words and numbers


def looks_secret(key: str) -> bool:
    """True if a (dotted) key names a credential: ``aws.secret_access_key``, ``apiToken``."""
    parts = [p.lower() for p in _SPLIT.split(str(key)) if p]
    return any(part in SECRET_WORDS for part in parts)


def is_credential_env(name: str, value: str) -> bool:
    """Whether an environment variable holds a credential worth masking."""
    if name in PLAIN_ENV or name.startswith(PLAIN_ENV_PREFIXES):
        return False
    if len(value) < MIN_ENV_SECRET or not looks_secret(name):
        return False
    try:
        return not os.path.exists(value)
    except (OSError, ValueError):  # not a possible path at all
        return True


def env_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of credential environment variables, longest first."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if is_credential_env(k, v)}
    return sorted(values, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """One string value (or a message) with URI passwords and credential values masked."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    for value in env_secrets(environ):
        text = text.replace(value, MASK)
    return text


def mask_value(value: Any, key: str = "", environ: Mapping[str, str] | None = None) -> Any:
    """``value`` safe to write: mappings and lists walked, secret keys and strings masked."""
    if looks_secret(key) and value not in (None, "") and not isinstance(value, (dict, list)):
        return MASK
    if isinstance(value, Mapping):
        return {k: mask_value(v, str(k), environ) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v, "", environ) for v in value]
    if isinstance(value, str):
        return redact(value, environ)
    return value


def mask_config(flat: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict:
    """A flattened config (``{"a.b": value}``) safe to log: secret keys and values masked."""
    return {key: mask_value(value, key, environ) for key, value in flat.items()}
