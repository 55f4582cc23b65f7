"""provisioning/postgres.py on real PostgreSQL: a primary, a streaming replica, the
multi-host URL before and after a switchover, a crash. Every server is removed, pass or fail."""

import os
import pwd
import time

import psycopg
import pytest

from provisioning import postgres
from provisioning.postgres import LocalPostgres, multi_host_url, start_primary, start_replica


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within %s s" % timeout
        time.sleep(0.05)


def start(request, make, *args):
    """Start a server whose removal is registered at once (a finaliser runs even if the test fails)."""
    server = make(*args)
    request.addfinalizer(server.remove)
    return server


@pytest.fixture(scope="module")
def pair(request):
    primary = start(request, start_primary)
    return primary, start(request, start_replica, primary)


@pytest.fixture
def fresh_pair(request):
    """A pair of its own, for a test that stops or promotes."""
    primary = start(request, start_primary)
    return primary, start(request, start_replica, primary)


def write_row(url, note):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO notes (note) VALUES (%s)", (note,))


def notes(url):
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('notes')").fetchone()[0] is None:
            return []
        return [row[0] for row in conn.execute("SELECT note FROM notes ORDER BY id")]


def server_port(url):
    with psycopg.connect(url) as conn:
        return conn.info.port


def test_a_primary_takes_connections_and_writes(pair):
    primary, _ = pair
    write_row(primary.url(), "written on the primary")
    assert "written on the primary" in notes(primary.url())
    assert primary.is_primary()
    assert primary.url().startswith("postgresql://postgres@127.0.0.1:")
    if os.geteuid() == 0:  # root: the server runs as the postgres user, in a folder it owns
        assert primary.folder.stat().st_uid == pwd.getpwnam("postgres").pw_uid


def test_a_replica_streams_the_primary_s_writes(pair):
    primary, replica = pair
    assert not replica.is_primary()
    write_row(primary.url(), "streamed")
    wait_for(lambda: "streamed" in notes(replica.url()))
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        write_row(replica.url(), "refused on a standby")


def test_the_multi_host_url_finds_the_primary(pair):
    primary, replica = pair
    assert server_port(multi_host_url([replica, primary])) == primary.port


def test_after_a_switchover_the_same_url_finds_the_promoted_replica(fresh_pair):
    primary, replica = fresh_pair
    url = multi_host_url([primary, replica])
    write_row(url, "before the switchover")
    wait_for(lambda: "before the switchover" in notes(replica.url()))
    primary.stop("fast")
    replica.promote()
    assert replica.is_primary()
    assert server_port(url) == replica.port
    write_row(url, "after the switchover")
    assert notes(url) == ["before the switchover", "after the switchover"]


def test_a_killed_server_restarts_with_what_it_committed(request):
    server = start(request, start_primary)
    write_row(server.url(), "committed")
    backends = postgres._children(server.proc.pid)
    server.kill()
    assert not server.running
    assert backends and not any(postgres._alive(pid) for pid in backends)
    server.start()
    assert notes(server.url()) == ["committed"]


def test_a_folder_made_earlier_starts_again_on_a_port_of_its_own(request):
    server = start(request, start_primary)
    write_row(server.url(), "kept")
    server.stop()
    again = LocalPostgres(server.folder)
    request.addfinalizer(again.remove)
    assert again.start().port != server.port
    assert notes(again.url()) == ["kept"]


def test_remove_deletes_the_folder(request):
    server = start(request, start_primary)
    server.remove()
    assert not server.running
    assert not server.folder.exists()


def test_no_postgresql_names_the_debian_package(request, monkeypatch, tmp_path):
    monkeypatch.setattr(postgres, "DEBIAN_BINDIRS", str(tmp_path / "*" / "bin"))
    postgres.postgres_bindir.cache_clear()
    request.addfinalizer(postgres.postgres_bindir.cache_clear)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install postgresql"):
        postgres.postgres_bindir()


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only: the binaries run as the postgres user")
def test_as_root_a_folder_the_postgres_user_cannot_reach_is_refused(tmp_path):
    # pytest's tmp_path is under /tmp/pytest-of-root, mode 700
    with pytest.raises(ValueError, match="cannot reach"):
        postgres.make_folder(tmp_path / "pg")
    assert not (tmp_path / "pg").exists()
