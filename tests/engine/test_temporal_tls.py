"""The Temporal runner over TLS, as Temporal Cloud and most self-hosted clusters are
reached: a TLS front (ALPN h2, client certificates required) before the dev server, which
speaks plain gRPC. With the CA and a client certificate and key from the settings the
runner connects and runs a session; without them it does not start, and says why."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from collections.abc import AsyncIterator

import pytest

from openjules.engine.runner import RunnerUnavailable
from openjules.engine.temporal_runner import TemporalRunner
from openjules.settings import Settings
from openjules.store.database import Database
from tests.engine.test_runner import _new_sessions
from tests.engine.test_temporal_runner import Work, _job_reaches
from tests.jobs_support import database_without_jobs
from tests.tls_support import Certificates, make_certificates

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("temporal-tls"))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def tls_front(temporal_address: str, certificates: Certificates) -> AsyncIterator[str]:
    """``127.0.0.1:PORT`` of a TLS front that requires a client certificate and passes
    the decrypted bytes to the dev server."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.cert, certificates.key)
    context.load_verify_locations(certificates.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    host, port = temporal_address.rsplit(":", 1)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@pytest.fixture
async def db(server_settings: Settings) -> AsyncIterator[Database]:
    async with database_without_jobs(server_settings) as database:
        yield database


def _settings(server_settings: Settings, address: str, **tls: object) -> Settings:
    return server_settings.model_copy(
        update={
            "runner": "temporal",
            "temporal_address": address,
            "temporal_task_queue": f"openjules-tls-{secrets.token_hex(6)}",
            **tls,
        }
    )


async def test_with_the_ca_and_a_client_certificate_the_runner_runs_sessions(
    server_settings: Settings, db: Database, tls_front: str, certificates: Certificates
) -> None:
    settings = _settings(
        server_settings,
        tls_front,
        temporal_tls_ca_file=certificates.ca,
        temporal_tls_cert_file=certificates.cert,
        temporal_tls_key_file=certificates.key,
    )
    [sid] = await _new_sessions(db, 1)
    work = Work()
    runner = TemporalRunner(settings=settings, db=db, work=work)
    await runner.start()
    try:
        await runner.submit(sid)
        await _job_reaches(db, sid, "done")
    finally:
        await runner.stop()
    assert work.runs[sid] == 1


async def test_without_the_servers_ca_the_runner_does_not_start(
    server_settings: Settings, db: Database, tls_front: str
) -> None:
    """TLS with the system's CAs only: the self-signed server is not trusted."""
    settings = _settings(server_settings, tls_front, temporal_tls=True)
    runner = TemporalRunner(settings=settings, db=db, work=Work())
    with pytest.raises(RunnerUnavailable, match=f"cannot reach Temporal at {tls_front}"):
        await runner.start()


async def test_without_the_client_certificate_the_front_refuses_the_runner(
    server_settings: Settings, db: Database, tls_front: str, certificates: Certificates
) -> None:
    """The server is trusted, but mTLS wants the client's certificate too: the one the
    first test connects with is what let it in."""
    settings = _settings(server_settings, tls_front, temporal_tls_ca_file=certificates.ca)
    runner = TemporalRunner(settings=settings, db=db, work=Work())
    with pytest.raises(RunnerUnavailable, match=f"cannot reach Temporal at {tls_front}"):
        await runner.start()


async def test_a_client_certificate_without_its_key_is_refused_before_connecting(
    server_settings: Settings, db: Database, tls_front: str, certificates: Certificates
) -> None:
    settings = _settings(server_settings, tls_front, temporal_tls_cert_file=certificates.cert)
    runner = TemporalRunner(settings=settings, db=db, work=Work())
    with pytest.raises(RunnerUnavailable, match="set both or neither"):
        await runner.start()
