"""Real servers for tests, each on 127.0.0.1 and a free port, stopped when the test ends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready, timeout_s: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if ready():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} was not ready within {timeout_s:g} s")


class ModelServer:
    """llama-cpp-python's OpenAI-compatible server with the bundled model."""

    def __init__(self, process: subprocess.Popen, port: int, api_key: str, log: Path):
        self.process, self.port, self.api_key, self.log = process, port, api_key, log
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@contextmanager
def model_server(model: Path, log: Path, api_key: str = "team-secret", n_ctx: int = 4096):
    port = free_port()
    handle = open(log, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--api_key", api_key, "--n_ctx", str(n_ctx)],
        stdout=handle, stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    server = ModelServer(process, port, api_key, log)
    try:
        headers = {"Authorization": f"Bearer {api_key}"}
        wait_until(lambda: httpx.get(f"{server.url}/v1/models", headers=headers, timeout=2).status_code == 200,
                   120, "the model server", process)
        yield server
    finally:
        server.stop()
        handle.close()


# --- team servers: PostgreSQL, a Chroma server and a TLS proxy that checks a token ----------
# `.ci/run` starts one set for the whole run (python -m tests.servers start DIR) and exports
# ENCLAVE_TEST_* variables; without them, the `team_servers` fixture starts its own set.

PG_BIN = Path(os.environ.get("ENCLAVE_PG_BIN", "/usr/lib/postgresql/15/bin"))
ADMIN_PASSWORD = "enclave-admin-secret"
PROXY_TOKEN = "team-token-for-tests"


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for localhost and 127.0.0.1, signed by it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    later = now + datetime.timedelta(days=30)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    ca_key, server_key = key(), key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Enclave test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(ca_name).public_key(server_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                                      serialization.NoEncryption()))
    os.chmod(paths["key"], 0o600)
    return paths


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


class TeamServers:
    """Where the team servers listen: an admin DSN (the catalog owner), the Chroma server
    itself, the TLS proxy in front of it, its token, and the CA that signed both servers."""

    def __init__(self, folder: Path, pg_port: int, chroma_port: int, proxy_port: int, ca_file: Path,
                 processes: list[subprocess.Popen] | None = None):
        self.folder, self.pg_port, self.chroma_port, self.proxy_port = folder, pg_port, chroma_port, proxy_port
        self.ca_file = ca_file
        self.processes = processes or []
        self.token = PROXY_TOKEN
        self.chroma_url = f"http://127.0.0.1:{chroma_port}"
        self.proxy_url = f"https://127.0.0.1:{proxy_port}"

    def dsn(self, user: str = "enclave_admin", password: str = ADMIN_PASSWORD, dbname: str = "postgres") -> str:
        return (f"host=127.0.0.1 port={self.pg_port} dbname={dbname} user={user} password={password} "
                f"sslmode=verify-full sslrootcert={self.ca_file}")

    def env(self) -> dict[str, str]:
        return {"ENCLAVE_TEST_PG_PORT": str(self.pg_port), "ENCLAVE_TEST_CHROMA_PORT": str(self.chroma_port),
                "ENCLAVE_TEST_PROXY_PORT": str(self.proxy_port), "ENCLAVE_TEST_CA_FILE": str(self.ca_file),
                "ENCLAVE_TEST_SERVERS_DIR": str(self.folder)}

    @classmethod
    def from_env(cls) -> "TeamServers | None":
        if not os.environ.get("ENCLAVE_TEST_PG_PORT"):
            return None
        e = os.environ
        return cls(Path(e["ENCLAVE_TEST_SERVERS_DIR"]), int(e["ENCLAVE_TEST_PG_PORT"]),
                   int(e["ENCLAVE_TEST_CHROMA_PORT"]), int(e["ENCLAVE_TEST_PROXY_PORT"]), Path(e["ENCLAVE_TEST_CA_FILE"]))

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        pgdata = self.folder / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            subprocess.run(_as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "immediate",
                                              "stop"]), capture_output=True, timeout=60)


def start_postgres(folder: Path, certs: dict[str, Path], port: int) -> None:
    pgdata = folder / "pgdata"
    pwfile = folder / "pw"
    pwfile.write_text(ADMIN_PASSWORD + "\n")
    pg_certs = folder / "pgcerts"
    pg_certs.mkdir()
    for name in ("cert", "key"):
        (pg_certs / certs[name].name).write_bytes(certs[name].read_bytes())
    for path in (folder, pwfile, pg_certs, *pg_certs.iterdir()):
        _give_to_postgres(path)
    os.chmod(pg_certs / certs["key"].name, 0o600)
    subprocess.run(_as_postgres_user([str(PG_BIN / "initdb"), "-D", str(pgdata), "-U", "enclave_admin",
                                      "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                                      "--locale=C.UTF-8"]), check=True, capture_output=True, timeout=300)
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{folder}'\n"
                   f"ssl = on\nssl_cert_file = '{pg_certs / certs['cert'].name}'\n"
                   f"ssl_key_file = '{pg_certs / certs['key'].name}'\nfsync = off\nmax_connections = 200\n")
    (pgdata / "pg_hba.conf").write_text("local all all scram-sha-256\n"
                                        "hostssl all all 127.0.0.1/32 scram-sha-256\n")
    subprocess.run(_as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-l", str(folder / "postgres.log"),
                                      "-w", "-t", "120", "start"]), check=True, capture_output=True, timeout=180)


def start_chroma(folder: Path, port: int) -> subprocess.Popen:
    chroma = Path(sys.executable).with_name("chroma")
    log = open(folder / "chroma.log", "wb")
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
    process = subprocess.Popen([str(chroma), "run", "--path", str(folder / "chroma"), "--host", "127.0.0.1",
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/api/v2/heartbeat"
    wait_until(lambda: httpx.get(url, timeout=2).status_code == 200, 120, "the Chroma server", process)
    return process


CADDYFILE = """{{
    admin off
    auto_https off
    storage file_system {storage}
    log {{
        output file {log}
    }}
}}
https://127.0.0.1:{port} {{
    tls {cert} {key}
    @without_token not header Authorization "Bearer {token}"
    respond @without_token "token required" 401
    reverse_proxy 127.0.0.1:{upstream}
}}
"""


def start_proxy(folder: Path, certs: dict[str, Path], port: int, upstream: int, token: str,
                ready_status: int = 200) -> subprocess.Popen:
    """Caddy on 127.0.0.1:port in front of upstream; ready once a request with the token gets
    ready_status (502 for a proxy whose upstream is down on purpose)."""
    caddyfile = folder / "Caddyfile"
    caddyfile.write_text(CADDYFILE.format(storage=folder / "caddy", log=folder / "caddy-access.log", port=port,
                                          cert=certs["cert"], key=certs["key"], token=token, upstream=upstream))
    env = dict(os.environ, HOME=str(folder), XDG_DATA_HOME=str(folder / "caddy"), XDG_CONFIG_HOME=str(folder / "caddy"))
    log = open(folder / "caddy.log", "wb")
    process = subprocess.Popen(["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    import ssl

    url = f"https://127.0.0.1:{port}/api/v2/heartbeat"
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    wait_until(lambda: httpx.get(url, timeout=2, verify=context,
                                 headers={"Authorization": f"Bearer {token}"}).status_code == ready_status,
               60, "the TLS proxy", process)
    return process


def start_team_servers(folder: Path) -> TeamServers:
    import tempfile

    if os.geteuid() == 0:  # the postgres user must reach the folder: not under root's 0700 temp dirs
        folder = Path(tempfile.mkdtemp(prefix="enclave-team-", dir="/tmp"))
        os.chmod(folder, 0o755)
    folder.mkdir(parents=True, exist_ok=True)
    certs = make_certificates(folder)
    os.chmod(certs["ca"], 0o644)
    pg_port, chroma_port, proxy_port = free_port(), free_port(), free_port()
    servers = TeamServers(folder, pg_port, chroma_port, proxy_port, certs["ca"])
    try:
        start_postgres(folder, certs, pg_port)
        servers.processes.append(start_chroma(folder, chroma_port))
        servers.processes.append(start_proxy(folder, certs, proxy_port, chroma_port, PROXY_TOKEN))
    except BaseException:
        servers.stop()
        raise
    return servers


if __name__ == "__main__":  # .ci/run: start DIR (prints export lines) | stop DIR
    import json
    import signal

    action, where = sys.argv[1], Path(sys.argv[2])
    if action == "start":
        servers = start_team_servers(where)
        state = {"pids": [p.pid for p in servers.processes], **servers.env()}
        where.mkdir(parents=True, exist_ok=True)
        (where / "servers.json").write_text(json.dumps(state))
        for key, value in servers.env().items():
            print(f"export {key}={value}")
        os._exit(0)  # leave the servers running for the test run
    elif action == "stop":
        state = json.loads((where / "servers.json").read_text())
        for pid in state["pids"]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        pgdata = Path(state["ENCLAVE_TEST_SERVERS_DIR"]) / "pgdata"
        subprocess.run(_as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "stop"]),
                       capture_output=True, timeout=60)
