"""An environment's `tls:` files, checked and read for the routers.

`tls_files` is the one place that opens them: it refuses a missing file, a
key other users can read, PEM that does not parse and a key that is not the
certificate's, each with the key path of `conveyor.yml` that names the file.
"""

from __future__ import annotations

import hashlib
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.config import LoadedConfig
    from conveyor.config.models.tls import TlsConfig

_TLS_HINT = (
    "give `tls:` a PEM certificate and its unencrypted PEM key, e.g. "
    "`tls: {certificate: certs/site.pem, key: certs/site.key}`, then `chmod 600` the key"
)


@dataclass(frozen=True)
class TlsFiles:
    """The checked files of an environment's `tls:` (absolute paths) and their contents."""

    certificate: Path
    key: Path
    certificate_pem: bytes
    key_pem: bytes

    @property
    def digest(self) -> str:
        """Changes when either file's content does: a router loads them again then."""
        return hashlib.sha256(self.certificate_pem + b"\0" + self.key_pem).hexdigest()[:16]

    @property
    def combined_pem(self) -> bytes:
        """Certificate chain then key, in one PEM (as HAProxy's `crt` wants it)."""
        cert = self.certificate_pem.rstrip(b"\n") + b"\n"
        return cert + self.key_pem.rstrip(b"\n") + b"\n"


def tls_files(root: Path, environment: str, config: TlsConfig, source: str) -> TlsFiles:
    """Check and read the `tls:` files of `environment`; `ConfigError` names what is wrong."""
    where = f"environments/{environment}/tls"
    issues: list[str] = []
    certificate = (root / config.certificate).resolve()
    key = (root / config.key).resolve()
    cert_pem = _read(certificate, f"{where}/certificate", issues)
    key_pem: bytes | None = None
    try:
        mode = key.stat().st_mode
    except FileNotFoundError:
        issues.append(f"{where}/key: {key} does not exist")
    except OSError as exc:
        issues.append(f"{where}/key: cannot read {key}: {exc.strerror}")
    else:
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            issues.append(
                f"{where}/key: {key} can be read by other users (mode "
                f"{stat.S_IMODE(mode):04o}); run `chmod 600 {key}`"
            )
        else:
            key_pem = _read(key, f"{where}/key", issues)
    if cert_pem is not None and key_pem is not None:
        issues.extend(_parse_issues(where, certificate, key, cert_pem, key_pem))
    if issues or cert_pem is None or key_pem is None:
        raise ConfigError(issues, source=source, hint=_TLS_HINT)
    return TlsFiles(certificate, key, cert_pem, key_pem)


def _read(path: Path, where: str, issues: list[str]) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        issues.append(f"{where}: {path} does not exist")
    except IsADirectoryError:
        issues.append(f"{where}: {path} is a directory, not a PEM file")
    except OSError as exc:
        issues.append(f"{where}: cannot read {path}: {exc.strerror}")
    return None


def _parse_issues(
    where: str, certificate: Path, key: Path, cert_pem: bytes, key_pem: bytes
) -> list[str]:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    issues: list[str] = []
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        issues.append(f"{where}/certificate: {certificate} holds no PEM certificate")
        chain = []
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        issues.append(f"{where}/key: {key} is encrypted; the router needs it unencrypted")
        return issues
    except (ValueError, UnsupportedAlgorithm):
        issues.append(f"{where}/key: {key} holds no PEM private key")
        return issues
    if chain:
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        encoding = serialization.Encoding.DER
        if chain[0].public_key().public_bytes(
            encoding, public
        ) != private.public_key().public_bytes(encoding, public):
            issues.append(f"{where}/key: {key} is not the key of the certificate in {certificate}")
    return issues


def trusting(certificate: Path) -> ssl.SSLContext:
    """A client context that trusts the usual CAs and `certificate` (ours, maybe
    self-signed or from a private CA): the checks of our own URL verify it, never skip it."""
    import httpx

    context = httpx.create_ssl_context()
    context.load_verify_locations(cafile=str(certificate))
    # The leaf (or an intermediate) in the file is a trust anchor of its own.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def environment_tls(loaded: LoadedConfig, environment: str) -> TlsFiles | None:
    """The checked `tls:` files of `environment` in a loaded config; None without `tls:`."""
    config = loaded.config.environments[environment].tls
    if config is None:
        return None
    return tls_files(loaded.root, environment, config, str(loaded.path))


def trusted_certificate(loaded: LoadedConfig, environment: str) -> Path | None:
    """The certificate file the checks of `environment`'s URL trust besides the usual CAs."""
    env = loaded.config.environments.get(environment)
    if env is None or env.tls is None:
        return None
    return (loaded.root / env.tls.certificate).resolve()
