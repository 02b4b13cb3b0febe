"""Certificate login checked by PostgreSQL itself, as in production: the distribution's
PostgreSQL (built with OpenSSL) serves TLS and reads the client certificate, with the
`cert` method (the certificate alone logs a role in, its CN is the role) and
`scram-sha-256 clientcert=verify-full` (a password and a certificate naming the role).
The wheel's PostgreSQL with pgvector, which the other team tests use, cannot do this (no
OpenSSL). Every login goes through the product's own connect_catalog."""

from __future__ import annotations

import pytest

from rag.errors import EnclaveError
from rag.index.team import connect_catalog
from tests.servers import (ADMIN_PASSWORD, client_certificate, free_port, make_certificates,
                           start_native_tls_postgres, stop_native_postgres)

HBA = ("hostssl all carol 127.0.0.1/32 cert\n"
       "hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n")


@pytest.fixture(scope="module")
def server():
    import shutil
    import tempfile
    from pathlib import Path

    import psycopg

    # Under /tmp itself: the server runs as the postgres user, who cannot enter pytest's
    # per-user temporary folder.
    folder = Path(tempfile.mkdtemp(prefix="enclave-native-pg-"))
    certs = make_certificates(folder)
    port = free_port()
    pgdata = start_native_tls_postgres(folder, port, certs, HBA)
    admin = psycopg.connect(host=str(folder), port=port, user="enclave_admin", password=ADMIN_PASSWORD,
                            dbname="postgres", autocommit=True)
    admin.execute("CREATE ROLE carol LOGIN")  # no password at all: the certificate is the login
    admin.execute("CREATE ROLE dave LOGIN PASSWORD 'dave-pw'")
    admin.close()
    yield folder, port, certs
    stop_native_postgres(pgdata)
    shutil.rmtree(folder, ignore_errors=True)


def _dsn(server, user, cert=None, password=None) -> str:
    folder, port, certs = server
    dsn = f"host=127.0.0.1 port={port} dbname=postgres user={user} sslmode=verify-full sslrootcert={certs['ca']}"
    if cert:
        dsn += f" sslcert={cert[0]} sslkey={cert[1]}"
    if password:
        dsn += f" password={password}"
    return dsn


def _who(db) -> tuple[str, str]:
    return db.execute("SELECT session_user::text, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()


def test_a_certificate_alone_logs_its_role_in(server, tmp_path):
    folder, _, certs = server
    db = connect_catalog(_dsn(server, "carol", client_certificate(tmp_path, certs["ca"], certs["ca_key"], "carol")))
    assert _who(db) == ("carol", "/CN=carol")
    db.close()


def test_a_certificate_for_another_role_an_expired_one_or_none_is_one_message_saying_what_to_fix(server, tmp_path):
    folder, _, certs = server
    daves = client_certificate(tmp_path, certs["ca"], certs["ca_key"], "dave")
    with pytest.raises(EnclaveError, match="certificate does not name this role.*carol"):
        connect_catalog(_dsn(server, "carol", daves))
    expired = client_certificate(tmp_path, certs["ca"], certs["ca_key"], "carol", expired=True)
    with pytest.raises(EnclaveError, match="client certificate as expired.*ask the administrator for a new one"):
        connect_catalog(_dsn(server, "carol", expired))
    with pytest.raises(EnclaveError, match="wants a client certificate it trusts.*set sslcert and sslkey"):
        connect_catalog(_dsn(server, "carol"))
    # A certificate from a CA the server does not trust.
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    other = make_certificates(stranger)
    foreign = client_certificate(stranger, other["ca"], other["ca_key"], "carol")
    with pytest.raises(EnclaveError, match="wants a client certificate it trusts"):
        connect_catalog(_dsn(server, "carol", foreign))


def test_a_password_role_with_clientcert_verify_full_needs_both(server, tmp_path):
    folder, _, certs = server
    daves = client_certificate(tmp_path, certs["ca"], certs["ca_key"], "dave")
    db = connect_catalog(_dsn(server, "dave", daves, password="dave-pw"))
    assert _who(db) == ("dave", "/CN=dave")
    db.close()
    with pytest.raises(EnclaveError, match="wants a client certificate it trusts"):
        connect_catalog(_dsn(server, "dave", password="dave-pw"))
    with pytest.raises(EnclaveError, match="refused this role's password"):
        connect_catalog(_dsn(server, "dave", daves, password="wrong"))
    # The right password with carol's certificate: the server says only that the password
    # failed (its log says "CN mismatch"), so the message names both things to check.
    carols = client_certificate(tmp_path, certs["ca"], certs["ca_key"], "carol")
    with pytest.raises(EnclaveError, match="refused this role's password.*certificate in sslcert was issued for"):
        connect_catalog(_dsn(server, "dave", carols, password="dave-pw"))
