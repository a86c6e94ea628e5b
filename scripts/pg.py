"""A throw-away PostgreSQL cluster in a temporary directory, on a free loopback port.

Used by the end-to-end tests (tests/e2e/conftest.py) and runnable by hand:
``python scripts/pg.py`` starts a cluster, prints its connection settings as JSON and stops it
on Ctrl-C. PostgreSQL refuses to run as root, so when we are root the cluster belongs to the
``postgres`` system user (created by the Debian package; created here if missing).
"""
import atexit
import decimal
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why and what to install."""


def find_bin_dir():
    """The directory holding initdb, pg_ctl and psql: from PATH, else the newest Debian install."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        real = os.path.dirname(os.path.realpath(initdb))
        if os.path.exists(os.path.join(real, "psql")):
            return real
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(path.split("/")[-2]) if path.split("/")[-2].isdigit() else 0,
    )
    for bin_dir in reversed(candidates):
        if os.path.exists(os.path.join(bin_dir, "pg_ctl")):
            return bin_dir
    raise PostgresUnavailable(
        "initdb/pg_ctl not found on PATH nor under /usr/lib/postgresql/*/bin; "
        "run scripts/setup-targets.sh (it installs the 'postgresql' package)"
    )


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TempPostgres:
    """Start with ``start()`` (or ``with``); ``stop()`` kills the server and deletes every file."""

    def __init__(self, dbname="warehouse", user="tap"):
        self.dbname = dbname
        self.user = user
        self.password = secrets.token_hex(12)
        self.host = "127.0.0.1"
        self.port = None
        self.bin_dir = None
        self.root = None
        self._as_user = []
        self._running = False

    @property
    def data_dir(self):
        return os.path.join(self.root, "data")

    @property
    def log_file(self):
        return os.path.join(self.root, "server.log")

    def settings(self):
        """Connection settings in the shape pipelinewise-target-postgres wants."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
        }

    def _run(self, args, as_server_user=True, **kwargs):
        command = (self._as_user if as_server_user else []) + args
        return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)

    def _prepare_user(self):
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", SERVER_USER],
                check=True, capture_output=True,
            )
        runuser = shutil.which("runuser")
        if not runuser:
            raise PostgresUnavailable("running as root but 'runuser' is missing; cannot drop to the postgres user")
        self._as_user = [runuser, "-u", SERVER_USER, "--"]
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def start(self):
        """initdb, start on a free port, create the database. Raises PostgresUnavailable."""
        self.bin_dir = find_bin_dir()
        self.root = tempfile.mkdtemp(prefix="tap-bigcommerce-pg-")
        atexit.register(self.stop)
        try:
            self._prepare_user()
            pwfile = os.path.join(self.root, "pw")
            with open(pwfile, "w") as handle:
                handle.write(self.password + "\n")
            if self._as_user:
                shutil.chown(pwfile, SERVER_USER)
            self._run([
                os.path.join(self.bin_dir, "initdb"), "-D", self.data_dir, "-U", self.user,
                "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
                "-E", "UTF8", "--locale=C", "--no-sync",
            ])
            os.unlink(pwfile)
            self._start_server()
            self._run([
                os.path.join(self.bin_dir, "createdb"), "-h", self.root, "-p", str(self.port),
                "-U", self.user, self.dbname,
            ])
        except subprocess.CalledProcessError as exc:
            log = ""
            if os.path.exists(self.log_file):
                with open(self.log_file) as handle:
                    log = handle.read()[-2000:]
            self.stop()
            raise PostgresUnavailable(
                f"{' '.join(map(str, exc.cmd))} failed ({exc.returncode}): {exc.stderr.strip()} {log}"
            ) from exc
        except Exception:
            self.stop()
            raise
        return self

    def _start_server(self):
        # A port found free can be taken before the server binds it; try a few.
        for attempt in range(3):
            self.port = free_port()
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self._run([
                    os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-l", self.log_file,
                    "-o", options, "-w", "-t", "30", "start",
                ])
                self._running = True
                return
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise

    def psql(self, sql):
        """Run SQL through psql over TCP with the password; return stdout (unaligned, tuples only)."""
        env = dict(os.environ, PGPASSWORD=self.password)
        result = subprocess.run(
            [os.path.join(self.bin_dir, "psql"), "-h", self.host, "-p", str(self.port),
             "-U", self.user, "-d", self.dbname, "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            check=True, capture_output=True, text=True, env=env,
        )
        return result.stdout

    def query_json(self, sql):
        """Rows of a SELECT as a list of dicts, via PostgreSQL's own json_agg (exact numerics)."""
        out = self.psql(f"SELECT coalesce(json_agg(q), '[]'::json) FROM ({sql}) AS q")
        return json.loads(out, parse_float=decimal.Decimal)

    def stop(self):
        """Stop the server (immediately) and remove its directory. Safe to call twice."""
        if self.root is None:
            return
        if self._running:
            subprocess.run(
                self._as_user + [os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir,
                                 "-m", "immediate", "-w", "stop"],
                capture_output=True,
            )
            self._running = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main():
    """Start a cluster, print its settings, wait for Ctrl-C, clean up."""
    with TempPostgres() as pg:
        print(json.dumps(pg.settings()), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
