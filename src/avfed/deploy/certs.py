"""TLS certificates and SuperNode keys for a federation, made with openssl and ssh-keygen.

``make_certificates(folder, hosts, nodes)`` writes a certificate authority (``ca.crt``;
its key ``ca.key`` stays with you), the SuperLink's certificate (``server.pem`` /
``server.key``) valid for every name or IP address in ``hosts`` (what SuperNodes type
after ``--superlink``), and one ECDSA key pair per SuperNode (``keys/supernode_<i>``
and ``.pub``). The CA certificate goes to every SuperNode and to where ``flwr run``
runs; each private node key goes to its node only; the public keys are registered with
``flwr supernode register``. The same steps as a shell script are
``scripts/make_certs.sh``.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

DAYS = 365


def _run(command: list[str], cwd: Path) -> None:
    if shutil.which(command[0]) is None:
        raise FileNotFoundError(f"{command[0]} is not installed; it is needed to make "
                                "TLS certificates and SuperNode keys")
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def subject_alt_names(hosts: list[str]) -> str:
    """``IP:127.0.0.1,DNS:link.example.org``: what the server certificate is valid for."""
    names = []
    for host in dict.fromkeys([*hosts, "127.0.0.1", "localhost"]):
        try:
            ipaddress.ip_address(host)
            names.append(f"IP:{host}")
        except ValueError:
            names.append(f"DNS:{host}")
    return ",".join(names)


def make_certificates(folder: str | Path, hosts: list[str], nodes: int) -> Path:
    """Write the CA, the SuperLink certificate and ``nodes`` SuperNode key pairs."""
    out = Path(folder)
    (out / "keys").mkdir(parents=True, exist_ok=True)
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
          "-days", str(DAYS), "-subj", "/CN=avfed federation CA",
          "-keyout", "ca.key", "-out", "ca.crt"], out)
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
          "-subj", f"/CN={hosts[0] if hosts else '127.0.0.1'}",
          "-keyout", "server.key", "-out", "server.csr"], out)
    (out / "server.ext").write_text(f"subjectAltName={subject_alt_names(hosts)}\n")
    _run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey",
          "ca.key", "-CAcreateserial", "-days", str(DAYS), "-sha256",
          "-extfile", "server.ext", "-out", "server.pem"], out)
    for i in range(nodes):
        key = out / "keys" / f"supernode_{i}"
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "",
                  "-f", str(key)], out)
    return out
