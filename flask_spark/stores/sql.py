"""Grants in SQL tables through SQLAlchemy Core: SQLite (the embedded default), PostgreSQL
and MariaDB/MySQL with one implementation.

Every compare-and-set is a single ``UPDATE ... WHERE`` whose matched-row count says who
won, so no transaction isolation level, row lock or second lock service is needed: plain
autocommit statements are atomic on every one of these databases. (The rate slots are
the one exception: MariaDB/MySQL make them at ``READ COMMITTED``, see :meth:`_connect`.)
SQLite runs in WAL mode with a busy timeout, so the processes of one host share the file
safely.

Tables (``spark_`` prefix by default)::

    spark_grants    id (PK), client_id, account_id, scope, access_token, refresh_token,
                    expires_at, obtained_at, redirect_uri, account (JSON), lease_holder,
                    lease_until, created_at, updated_at, last_used_at
    spark_bindings  id (PK, SHA-256 of the binding id), grant_id, account_id, scope,
                    created_at, last_used_at, expires_at
    spark_pending   id (PK, SHA-256 of the state), record (JSON), keep_until
    spark_markers   id (PK, SHA-256 of the name), expires_at
    spark_rate      bucket, slot (PK together), used_at: a row per call in the rate
                    window, made as needed up to the limit; a slot is free once its last
                    use is a window old, and taken by a compare-and-set on that time

On SQLite the rate table has a file of its own beside the grants (``spark-grants.sqlite3``
keeps it in ``spark-grants-rate.sqlite3``): the budget commits every few calls, and a
commit to the grants file tells every process (:class:`~.watch.SQLiteWatch`) to read its
bindings again.
"""

from __future__ import annotations

import json
import os
import random
import stat
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from ..errors import ConfigurationError, StoreUnavailable
from .base import (
    MAX_BATCH,
    TOUCH_INTERVAL,
    Binding,
    Grant,
    GrantKey,
    binding_digest,
    marker_digest,
    new_secret,
    state_digest,
)
from .watch import SQLiteWatch

#: Seconds between two sweeps of expired pending sign-ins and markers, per process.
SWEEP_INTERVAL = 60.0
#: Tries at creating the tables while other processes may be creating them too.
_CREATE_ATTEMPTS = 5
#: Free rate slots read at once, and rounds of trying to take one of them.
_SPEND_CANDIDATES = 16
_SPEND_ATTEMPTS = 8
#: What the databases answer when they undo a statement because a concurrent one won
#: (a deadlock, a serialization failure): MySQL/MariaDB's error number, PostgreSQL's
#: SQLSTATE.
_MYSQL_DEADLOCK = 1213
_PG_LOST_RACE = frozenset({"40001", "40P01"})
#: Milliseconds SQLite waits for another process's write before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000


def _tables(
    prefix: str,
) -> tuple[sa.MetaData, sa.Table, sa.Table, sa.Table, sa.Table, sa.Table]:
    meta = sa.MetaData()
    grants = sa.Table(
        f"{prefix}grants",
        meta,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("client_id", sa.String(255), nullable=False, index=True),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("access_token", sa.Text, nullable=False),
        sa.Column("refresh_token", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("obtained_at", sa.Double, nullable=False),
        sa.Column("redirect_uri", sa.Text),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("lease_holder", sa.String(64)),
        sa.Column("lease_until", sa.Double, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("last_used_at", sa.Double, nullable=False),
    )
    bindings = sa.Table(
        f"{prefix}bindings",
        meta,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("grant_id", sa.String(32), nullable=False, index=True),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("last_used_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False, index=True),
    )
    pending = sa.Table(
        f"{prefix}pending",
        meta,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("keep_until", sa.Double, nullable=False, index=True),
    )
    markers = sa.Table(
        f"{prefix}markers",
        meta,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Double, nullable=False, index=True),
    )
    rate = sa.Table(
        f"{prefix}rate",
        sa.MetaData(),  # created apart: on SQLite, in a file of its own
        sa.Column("bucket", sa.String(32), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("used_at", sa.Double, nullable=False),
        sa.Index(f"ix_{prefix}rate_bucket_used_at", "bucket", "used_at"),
    )
    return meta, grants, bindings, pending, markers, rate


#: The files of one SQLite database: another user must own none of them.
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def _make_private(path: str) -> None:
    """Create ``path`` readable by this user only (SQLite gives its ``-wal`` and ``-shm``
    the same mode), and make sure no other user owns or can open any file of the
    database: one who could would read it, or hold its locks and stall every sign-in.

    :raises ConfigurationError: another user owns one of the files, or one is a symlink.
    """
    os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600))
    for suffix in _SQLITE_COMPANIONS:
        name = path + suffix
        try:
            info = os.lstat(name)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
            raise ConfigurationError(
                "SPARK_GRANT_STORE",
                f"the SQLite file {os.path.basename(name)!r} belongs to another user (or is "
                "a symlink): refusing a database others could lock or read. Remove it, or "
                "keep the grants in a folder only this user can write to",
            )
        if info.st_mode & 0o077:
            os.chmod(name, 0o600)


def rate_path(path: str) -> str:
    """The file that keeps the rate table of the SQLite grants file ``path``."""
    root, ext = os.path.splitext(path)
    return f"{root}-rate{ext}"


def _lost_race(exc: DBAPIError) -> bool:
    """Whether the database undid a statement because a concurrent one came first: a
    key another caller made meanwhile, a deadlock (MariaDB's ``INSERT ... SELECT`` locks
    the gap it reads, so two callers making the same slots deadlock on it) or a
    serialization failure. Trying again is the answer to each of them."""
    if isinstance(exc, IntegrityError):
        return True
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _PG_LOST_RACE:
        return True
    args: tuple[object, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] == _MYSQL_DEADLOCK


def _rows_unless_lost(
    conn: Connection, statement: sa.Executable, params: dict[str, Any] | None = None
) -> int | None:
    """The rows ``statement`` changed; ``None`` when the database undid it because a
    concurrent statement came first (:func:`_lost_race`)."""
    try:
        return conn.execute(statement, params).rowcount
    except DBAPIError as exc:
        if not _lost_race(exc):
            raise
        return None


def sqlite_engine(path: str) -> Engine:
    """An engine for the SQLite file ``path`` set up for several processes of one host:
    WAL journal, a busy timeout, and a fresh pool in each forked child. The database's
    files are this user's alone (:func:`_make_private`)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    _make_private(path)
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    return engine


_OWN_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_pools_after_fork() -> None:
    for engine in list(_OWN_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


class SQLGrantStore:
    """:class:`~flask_spark.stores.base.GrantStore` in four SQL tables.

    :param engine: an SQLAlchemy :class:`~sqlalchemy.engine.Engine` (an app's own, or
        Flask-SQLAlchemy's ``db.engine``), or a database URL such as
        ``sqlite:////srv/app/instance/spark-grants.sqlite3``,
        ``postgresql+psycopg://app@db/app`` or ``mysql+pymysql://app@db/app``.
    :param table_prefix: the tables' name prefix.
    :param create_tables: create missing tables on first use.

    :attr:`engine` is the grants' database; :attr:`rate_engine` the rate table's, the
    same one except beside an SQLite file (:func:`rate_path`).
    """

    def __init__(
        self,
        engine: Engine | str,
        *,
        table_prefix: str = "spark_",
        create_tables: bool = True,
    ) -> None:
        if isinstance(engine, str):
            url = sa.engine.make_url(engine)
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                engine = sqlite_engine(url.database)
            else:
                engine = sa.create_engine(url, pool_pre_ping=True)
            _OWN_ENGINES.add(engine)
            self._owns_engine = True
        else:
            self._owns_engine = False
        self.engine = engine
        (
            self._meta,
            self._grants,
            self._bindings,
            self._pending,
            self._markers,
            self._rate,
        ) = _tables(table_prefix)
        b, g = self._bindings.c, self._grants.c
        # Built once: the statement every request of a signed-in browser runs.
        self._resolve_query = (
            sa.select(
                self._grants,
                b.created_at.label("binding_created_at"),
                b.last_used_at.label("binding_used_at"),
            )
            .select_from(self._bindings.join(self._grants, b.grant_id == g.id))
            .where(b.id == sa.bindparam("binding"), b.expires_at > sa.bindparam("now"))
        )
        # Built once too: the rate budget's statement, every few calls. (The names of its
        # parameters may not be those of columns, which UPDATE keeps for its SET.)
        r = self._rate.c
        # "+ 0" keeps an index from serving a condition: SQLite, which keeps no statistics
        # here, would otherwise walk every slot below the limit and sort them by time
        # (10 ms with 40,000 slots) instead of reading the oldest few off the time index.
        in_limit = r.slot + 0 < sa.bindparam("rate_limit")
        oldest_free = (
            sa.select(r.slot)
            .where(
                r.bucket == sa.bindparam("rate_bucket"),
                in_limit,
                r.used_at <= sa.bindparam("rate_cutoff"),
            )
            .order_by(r.used_at)
            .limit(sa.bindparam("rate_count", type_=sa.Integer))
        )
        if self.engine.dialect.name in ("mysql", "mariadb"):
            # MySQL reads the table it updates only through a derived table.
            oldest_free = sa.select(oldest_free.subquery().c.slot)
        self._take_oldest = (
            sa.update(self._rate)
            .where(
                r.bucket == sa.bindparam("rate_bucket"),
                # The compare-and-set, which no index serves: the rows are found by
                # their primary key, not by walking every free slot.
                r.used_at + 0 <= sa.bindparam("rate_cutoff"),
                r.slot.in_(oldest_free),
            )
            .values(used_at=sa.bindparam("rate_now"))
        )
        # The next slots, in one statement: numbered on from the highest one made (slots
        # are numbered from 0 as they are made, so that is how many there are, read off
        # the primary key's index), rate_count of them but never past rate_limit. It makes
        # none once all are made; two callers making the same number collide on the key.
        # Plain SQL that every dialect takes (no recursive CTE).
        first = (
            sa.select((sa.func.coalesce(sa.func.max(r.slot), -1) + 1).label("n"))
            .where(r.bucket == sa.bindparam("rate_bucket"), r.slot < sa.bindparam("rate_limit"))
            .subquery("first_free")
        )
        offsets = sa.union_all(
            *(
                sa.select(sa.literal_column(str(k), sa.Integer).label("k"))
                for k in range(MAX_BATCH)
            )
        ).subquery("offsets")
        self._make_slots = (
            sa.insert(self._rate)
            .from_select(
                ["bucket", "slot", "used_at"],
                sa.select(
                    sa.bindparam("rate_bucket", type_=sa.String),
                    first.c.n + offsets.c.k,
                    sa.bindparam("rate_now", type_=sa.Double),
                )
                # The numbers from the first free one on, never past the limit.
                .select_from(
                    first.join(
                        offsets,
                        first.c.n + offsets.c.k < sa.bindparam("rate_limit", type_=sa.Integer),
                    )
                )
                .where(offsets.c.k < sa.bindparam("rate_count", type_=sa.Integer)),
            )
            .execution_options(preserve_rowcount=True)
        )  # how many it made, on every driver
        self._oldest = (
            sa.select(r.slot, r.used_at)
            .where(r.bucket == sa.bindparam("rate_bucket"), in_limit)
            .order_by(r.used_at)
            .limit(_SPEND_CANDIDATES)
        )
        self._create = create_tables
        self._ready = not create_tables
        self._ready_lock = threading.Lock()
        self._last_sweep = 0.0
        #: Rate buckets whose last batch here made new slots: the next one goes straight
        #: to making more, without first looking for free ones.
        self._growing: set[str] = set()
        database = self.engine.url.database
        self._watch: SQLiteWatch | None = None
        #: Where the rate table is: the grants' own database, except beside an SQLite file.
        self.rate_engine = self.engine
        if self.engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
            self._watch = SQLiteWatch(database)
            self.rate_engine = sqlite_engine(rate_path(database))
            _OWN_ENGINES.add(self.rate_engine)

    def __repr__(self) -> str:
        return f"<SQLGrantStore {self.engine.url.get_backend_name()}>"

    def changes(self) -> SQLiteWatch | None:
        """A watch of the file's commits on SQLite (:class:`~.watch.SQLiteWatch`); ``None``
        on database servers, whose readers go to the database on each request."""
        return self._watch

    def _same(self, column: sa.ColumnElement[Any], value: str | None) -> sa.ColumnElement[bool]:
        """``column = value``, character for character. MySQL and MariaDB compare text by
        its collation, which by default ignores case and trailing spaces: there the bytes
        are compared as well (the plain comparison still lets an index be used)."""
        if value is None:
            return column.is_(None)
        if self.engine.dialect.name not in ("mysql", "mariadb"):
            return column == value
        exact = sa.cast(column, sa.LargeBinary) == sa.cast(
            sa.literal(value, sa.Text), sa.LargeBinary
        )
        return sa.and_(column == value, exact)

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _connect(
        self, *, begin: bool = False, autocommit: bool = False, rate: bool = False
    ) -> Iterator[Connection]:
        """A connection in autocommit-per-statement use, or one transaction with
        ``begin``, or with ``autocommit`` the database's own autocommit (no ``BEGIN`` and
        ``COMMIT`` round trips: for a statement that is atomic alone); with ``rate``, to
        the rate table's database. The database's own errors become
        :class:`StoreUnavailable`."""
        engine = self.rate_engine if rate else self.engine
        try:
            if not self._ready:
                self._create_tables()
            if begin:
                with engine.begin() as conn:
                    yield conn
            elif autocommit:
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    yield conn
            else:
                with engine.connect() as conn:
                    if rate and engine.dialect.name in ("mysql", "mariadb"):
                        # Slots are made by an INSERT ... SELECT, which at InnoDB's
                        # REPEATABLE READ locks the gap it reads: callers making slots
                        # at once deadlock on it far more often than they collide.
                        # Read committed, they only collide on the key, which says who
                        # made it.
                        conn.execution_options(isolation_level="READ COMMITTED")
                    yield conn
                    conn.commit()
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"Grant store unavailable ({type(exc).__name__})") from None

    def _create_tables(self) -> None:
        with self._ready_lock:
            if self._ready:
                return
            for attempt in range(_CREATE_ATTEMPTS):
                try:
                    self._meta.create_all(self.engine, checkfirst=True)
                    self._rate.metadata.create_all(self.rate_engine, checkfirst=True)
                    break
                except SQLAlchemyError:
                    # Another process created one meanwhile ("already exists"): look again.
                    if attempt + 1 == _CREATE_ATTEMPTS:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            self._ready = True

    def _row_to_grant(self, row: Any, client_id: str | None = None) -> Grant:
        m = row._mapping
        try:
            account = json.loads(m["account"])
        except ValueError:
            account = {}
        return Grant(
            key=GrantKey(client_id or m["client_id"], m["account_id"], m["scope"]),
            access_token=m["access_token"],
            refresh_token=m["refresh_token"],
            expires_at=m["expires_at"],
            obtained_at=m["obtained_at"],
            redirect_uri=m["redirect_uri"],
            account=account if isinstance(account, dict) else {},
            lease_holder=m["lease_holder"],
            lease_until=m["lease_until"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
            last_used_at=m["last_used_at"],
        )

    def _sweep(self, conn: Connection, now: float) -> None:
        if now - self._last_sweep < SWEEP_INTERVAL:
            return
        self._last_sweep = now
        conn.execute(sa.delete(self._pending).where(self._pending.c.keep_until <= now))
        conn.execute(sa.delete(self._markers).where(self._markers.c.expires_at <= now))
        conn.execute(sa.delete(self._bindings).where(self._bindings.c.expires_at <= now))

    # -- grants --------------------------------------------------------------------------

    def get(self, key: GrantKey) -> Grant | None:
        with self._connect() as conn:
            row = conn.execute(sa.select(self._grants).where(self._grants.c.id == key.id)).first()
        return None if row is None else self._row_to_grant(row)

    def _insert(self, conn: Connection, grant: Grant) -> None:
        conn.execute(
            sa.insert(self._grants).values(
                id=grant.key.id,
                client_id=grant.key.client_id,
                account_id=grant.key.account_id,
                scope=grant.key.scope,
                access_token=grant.access_token,
                refresh_token=grant.refresh_token,
                expires_at=grant.expires_at,
                obtained_at=grant.obtained_at,
                redirect_uri=grant.redirect_uri,
                account=json.dumps(grant.account),
                lease_holder=None,
                lease_until=0.0,
                created_at=grant.created_at,
                updated_at=grant.updated_at,
                last_used_at=grant.last_used_at,
            )
        )

    def add(self, grant: Grant) -> bool:
        with self._connect() as conn:
            try:
                self._insert(conn, grant)
            except IntegrityError:
                conn.rollback()
                return False
        return True

    def put(self, grant: Grant) -> Grant | None:
        g = self._grants.c
        values = {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_at": grant.expires_at,
            "obtained_at": grant.obtained_at,
            "redirect_uri": grant.redirect_uri,
            "account": json.dumps(grant.account),
            "lease_holder": None,
            "lease_until": 0.0,
            "updated_at": grant.updated_at,
        }
        while True:  # compare-and-set on the tokens read, until no other writer interferes
            old = self.get(grant.key)
            with self._connect() as conn:
                if old is None:
                    try:
                        self._insert(conn, grant)
                    except IntegrityError:
                        conn.rollback()
                        continue
                    return None
                done = conn.execute(
                    sa.update(self._grants)
                    .where(
                        g.id == grant.key.id,
                        self._same(g.access_token, old.access_token),
                        self._same(g.refresh_token, old.refresh_token),
                    )
                    .values(**values)
                ).rowcount
            if done:
                return old

    def take_lease(
        self, key: GrantKey, stale_access_token: str, holder: str, until: float, now: float
    ) -> tuple[bool, Grant | None]:
        g = self._grants.c
        with self._connect() as conn:
            won = conn.execute(
                sa.update(self._grants)
                .where(
                    g.id == key.id,
                    self._same(g.access_token, stale_access_token),
                    sa.or_(
                        g.lease_holder.is_(None),
                        g.lease_until <= now,
                        self._same(g.lease_holder, holder),
                    ),
                )
                .values(lease_holder=holder, lease_until=until)
            ).rowcount
            row = conn.execute(sa.select(self._grants).where(g.id == key.id)).first()
        return bool(won), None if row is None else self._row_to_grant(row)

    def finish_refresh(self, key: GrantKey, stale_access_token: str, grant: Grant) -> bool:
        g = self._grants.c
        ours = self._same(g.lease_holder, grant.lease_holder)
        with self._connect() as conn:
            done = conn.execute(
                sa.update(self._grants)
                .where(
                    g.id == key.id,
                    sa.or_(
                        self._same(g.access_token, stale_access_token),
                        self._same(g.access_token, grant.access_token),  # a retry
                    ),
                )
                # In this order: MySQL and MariaDB evaluate each assignment on the row as
                # the assignments before it left it, so lease_holder is changed last.
                .ordered_values(
                    (g.access_token, grant.access_token),
                    (g.refresh_token, grant.refresh_token),
                    (g.expires_at, grant.expires_at),
                    (g.obtained_at, grant.obtained_at),
                    (g.updated_at, grant.updated_at),
                    (g.lease_until, sa.case((ours, 0.0), else_=g.lease_until)),
                    (g.lease_holder, sa.case((ours, sa.null()), else_=g.lease_holder)),
                )
            ).rowcount
        return bool(done)

    def release_lease(self, key: GrantKey, holder: str) -> None:
        g = self._grants.c
        with self._connect() as conn:
            conn.execute(
                sa.update(self._grants)
                .where(g.id == key.id, self._same(g.lease_holder, holder))
                .values(lease_holder=None, lease_until=0.0)
            )

    def end(self, key: GrantKey, access_token: str) -> bool:
        g = self._grants.c
        with self._connect() as conn:
            done = conn.execute(
                sa.update(self._grants)
                .where(g.id == key.id, self._same(g.access_token, access_token))
                .values(access_token="", refresh_token="", lease_holder=None, lease_until=0.0)
            ).rowcount
        return bool(done)

    def delete(self, key: GrantKey) -> Grant | None:
        with self._connect(begin=True) as conn:
            row = conn.execute(sa.select(self._grants).where(self._grants.c.id == key.id)).first()
            conn.execute(sa.delete(self._bindings).where(self._bindings.c.grant_id == key.id))
            conn.execute(sa.delete(self._grants).where(self._grants.c.id == key.id))
        return None if row is None else self._row_to_grant(row)

    def grants(self, client_id: str) -> Iterator[Grant]:
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(self._grants).where(self._same(self._grants.c.client_id, client_id))
            ).all()
        return iter([self._row_to_grant(row) for row in rows])

    # -- bindings ------------------------------------------------------------------------

    def bind(self, key: GrantKey, now: float, ttl: float) -> str | None:
        binding_id = new_secret()
        with self._connect() as conn:
            exists = conn.execute(
                sa.select(self._grants.c.id).where(self._grants.c.id == key.id)
            ).first()
            if exists is None:
                return None
            conn.execute(
                sa.insert(self._bindings).values(
                    id=binding_digest(binding_id),
                    grant_id=key.id,
                    account_id=key.account_id,
                    scope=key.scope,
                    created_at=now,
                    last_used_at=now,
                    expires_at=now + ttl,
                )
            )
            self._sweep(conn, now)
        return binding_id

    def resolve(self, binding_id: str, now: float, ttl: float) -> tuple[Binding, Grant] | None:
        b, g = self._bindings.c, self._grants.c
        name = binding_digest(binding_id)
        with self._connect() as conn:
            row = conn.execute(self._resolve_query, {"binding": name, "now": now}).first()
            if row is None:
                return None
            grant = self._row_to_grant(row)
            used = row._mapping["binding_used_at"]
            if now - used >= TOUCH_INTERVAL:
                used = now
                conn.execute(
                    sa.update(self._bindings)
                    .where(b.id == name)
                    .values(last_used_at=now, expires_at=now + ttl)
                )
                conn.execute(
                    sa.update(self._grants).where(g.id == grant.key.id).values(last_used_at=now)
                )
                grant = replace(grant, last_used_at=now)
        binding = Binding(
            grant.key.id,
            grant.key.account_id,
            grant.key.scope,
            row._mapping["binding_created_at"],
            used,
        )
        return binding, grant

    def unbind(self, binding_id: str) -> None:
        with self._connect() as conn:
            conn.execute(
                sa.delete(self._bindings).where(self._bindings.c.id == binding_digest(binding_id))
            )

    # -- pending sign-ins and markers ----------------------------------------------------

    def put_pending(self, state: str, record: dict[str, Any], expires_at: float) -> None:
        with self._connect() as conn:
            conn.execute(
                sa.insert(self._pending).values(
                    id=state_digest(state), record=json.dumps(record), keep_until=expires_at
                )
            )
            self._sweep(conn, time.time())

    def take_pending(self, state: str, now: float) -> dict[str, Any] | None:
        p = self._pending.c
        name = state_digest(state)
        with self._connect() as conn:
            row = conn.execute(sa.select(p.record, p.keep_until).where(p.id == name)).first()
            if row is None:
                return None
            # Exactly one caller deletes the row; only that one gets the record.
            if not conn.execute(sa.delete(self._pending).where(p.id == name)).rowcount:
                return None
        if row.keep_until <= now:
            return None
        try:
            record = json.loads(row.record)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def mark(self, name: str, expires_at: float) -> None:
        m = self._markers.c
        digest_ = marker_digest(name)
        with self._connect() as conn:
            updated = conn.execute(
                sa.update(self._markers).where(m.id == digest_).values(expires_at=expires_at)
            ).rowcount
            if updated:
                return
            try:
                conn.execute(sa.insert(self._markers).values(id=digest_, expires_at=expires_at))
            except IntegrityError:  # another process marked it meanwhile: just as good
                conn.rollback()

    def marked(self, name: str, now: float) -> bool:
        m = self._markers.c
        with self._connect() as conn:
            at = conn.execute(
                sa.select(m.expires_at).where(m.id == marker_digest(name))
            ).scalar_one_or_none()
        return at is not None and at > now

    # -- rate windows ------------------------------------------------------------------

    def spend(
        self, bucket: str, limit: int, window: float, now: float, count: int = 1
    ) -> tuple[int, float]:
        r = self._rate.c
        cutoff = now - window
        # Once the window's slots are made, there are usually free ones that nobody else
        # wants: take the oldest in one statement. Else (no free slot, other callers took
        # them first, or slots are still being made) look closer.
        if bucket not in self._growing:
            with self._connect(autocommit=True, rate=True) as conn:
                # None: undone for a concurrent caller; look closer, below.
                taken = _rows_unless_lost(
                    conn,
                    self._take_oldest,
                    {
                        "rate_bucket": bucket,
                        "rate_cutoff": cutoff,
                        "rate_limit": limit,
                        "rate_count": count,
                        "rate_now": now,
                    },
                )
            if taken:
                return taken, 0.0
        for _ in range(_SPEND_ATTEMPTS):
            with self._connect(rate=True) as conn:
                # Slots still to make: make the next ones (as the calls of a window need
                # them, never more than the limit).
                made = _rows_unless_lost(
                    conn,
                    self._make_slots,
                    {
                        "rate_bucket": bucket,
                        "rate_limit": limit,
                        "rate_count": count,
                        "rate_now": now,
                    },
                )
                if made is None:
                    conn.rollback()  # another caller made one first: look again
                    continue
                if made:
                    self._growing.add(bucket)
                    return made, 0.0
                if bucket in self._growing:
                    self._growing.discard(bucket)
                    break  # all made: the oldest free slots first, below
                rows = conn.execute(
                    self._oldest, {"rate_bucket": bucket, "rate_limit": limit}
                ).all()
                free = [row.slot for row in rows if row.used_at <= cutoff]
                if not free:
                    return 0, max(float(rows[0].used_at) + window - now, 1e-3)
                # Other callers took the oldest first. A random free slot, so that callers
                # reading the same candidates at once mostly take different ones.
                slot = random.choice(free)  # noqa: S311 - spreading, not security
                taken = _rows_unless_lost(
                    conn,
                    sa.update(self._rate)
                    .where(r.bucket == bucket, r.slot == slot, r.used_at <= cutoff)
                    .values(used_at=now),
                )
                if taken is None:
                    conn.rollback()
                    continue
                if taken:
                    return 1, 0.0
        else:
            return 0, 1e-3  # every candidate went to another caller: look again shortly
        # Every slot is made: from now on the oldest free ones are taken first (with this
        # connection given back, not held while the next statement runs).
        return self.spend(bucket, limit, window, now, count)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self.rate_engine is not self.engine:
            self.rate_engine.dispose()
        if self._owns_engine:
            self.engine.dispose()
