"""Ed25519 key files of operators and of the writer (the `cryptography` library).

A key is a file the operator points to (`--key PATH`, `--writer-key PATH`, or
`$PERPLEDGER_OPERATOR_KEY` / `$PERPLEDGER_WRITER_KEY`): an unencrypted PKCS#8
PEM private key, mode 0600, with its public key beside it in `PATH.pub`
(hex). Keys are never stored in the ledger or under its data directory: the
chain holds only public keys (`RegisterKey`), the data directory at most the
path of the writer key `init` was given (so later writers find it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.core.authority import key_id as _key_id
from ledger.errors import CommandInvalid, LedgerError

OPERATOR_KEY_ENV = "PERPLEDGER_OPERATOR_KEY"
WRITER_KEY_ENV = "PERPLEDGER_WRITER_KEY"


class KeyError_(LedgerError):
    """A key file that is missing, unreadable, malformed, or in the wrong place."""


@dataclass(frozen=True)
class Key:
    """An Ed25519 private key loaded from its file."""

    path: Path
    private: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return _key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def create_key(path: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None,
               seed: bytes | None = None) -> Key:
    """Create a new key file (0600) and its `.pub`; refuses to overwrite one.

    `seed` (32 bytes) makes the key from it instead of from the OS's randomness: only
    for reproducible fixtures (tools/fingerprint.py), never for a real ledger.
    """
    p = Path(path)
    _outside(p, data_dir)
    if p.exists():
        raise KeyError_(f"a key file already exists at {p}; refusing to overwrite it")
    p.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate() if seed is None else \
        Ed25519PrivateKey.from_private_bytes(seed)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    key = Key(p, private)
    Path(f"{p}.pub").write_text(key.public_key.hex() + "\n")
    return key


def load_key(path: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None
             ) -> Key:
    """Load a private key file (raises KeyError_ saying what is wrong)."""
    p = Path(path)
    _outside(p, data_dir)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise KeyError_(f"no key file at {p} (create one with `ledgerctl keys create "
                        f"--out {p}`)") from None
    except OSError as exc:
        raise KeyError_(f"cannot read the key file {p}: {exc.strerror}") from None
    try:
        private = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{p} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyError_(f"{p} holds a {type(private).__name__}, not an Ed25519 key")
    return Key(p, private)


def load_public(path: str | os.PathLike[str]) -> bytes:
    """A public key from a `.pub` file (hex) or from a private key file."""
    p = Path(path)
    try:
        text = p.read_text().strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    if len(text) == 64 and all(ch in "0123456789abcdef" for ch in text.lower()):
        return bytes.fromhex(text)
    return load_key(p).public_key


def resolve(explicit: str | os.PathLike[str] | None, env: str,
            recorded: str | None = None, *, data_dir: str | os.PathLike[str] | None = None,
            what: str = "operator") -> Key:
    """The key to use: the explicit path, else $env, else the recorded path."""
    for candidate in (explicit, os.environ.get(env), recorded):
        if candidate:
            return load_key(candidate, data_dir=data_dir)
    option = "--key" if what == "operator" else "--writer-key"
    raise CommandInvalid(f"this needs the {what} key: pass {option} PATH or set ${env} "
                         f"(`ledgerctl keys create --out PATH` makes one)")


def _outside(path: Path, data_dir: str | os.PathLike[str] | None) -> None:
    if data_dir is None:
        return
    key = path.resolve()
    data = Path(data_dir).resolve()
    if key == data or data in key.parents:
        raise KeyError_(f"key file {path} is inside the data directory {data_dir}; keys are "
                        "never stored with the ledger: keep it elsewhere")
