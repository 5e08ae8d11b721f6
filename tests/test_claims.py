"""Concurrent claims of one preset (SPEC 4.5, issue 9): no false misses, every prebuild claimed
once, and the lifetime counters (sharded per backend) count each claim exactly once."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

import psycopg

from prebuilds.queries import query
from tests.support import scalar

Conn = psycopg.Connection[Any]

THREADS = 8
CLAIMS_PER_THREAD = 25
POOL = 150

# The full (epoch-aware) xid of a row's xmin, relative to the current snapshot's xmax.
# (Doubled %: it is sent with parameters.)
FULL_XMIN = """
(pg_snapshot_xmax(pg_current_snapshot())::text::bigint
    - ((pg_snapshot_xmax(pg_current_snapshot())::text::bigint - b.xmin::text::bigint)
        %% 4294967296 + 4294967296) %% 4294967296)
"""


def test_concurrent_claims_have_no_false_misses_and_count_once(conn: Conn, db_url: str) -> None:
    conn.autocommit = True
    web = scalar(conn, "select fixture.active_preset('web', %s)", (POOL,))
    other = scalar(conn, "select fixture.active_preset('other', 5)")
    conn.execute(
        "select fixture.prebuild(%s, now() - make_interval(secs => n)) "
        "from generate_series(1, %s) as n",
        (web, POOL),
    )
    conn.execute("select fixture.prebuild(%s, now()) from generate_series(1, 5)", (other,))
    users = [scalar(conn, "select fixture.user(%s)", (f"person-{i}",)) for i in range(THREADS)]

    start = threading.Barrier(THREADS)
    hits: list[UUID] = []
    # Per miss: an xid taken right after it returned. Any transaction with a larger xid had no
    # xid, hence held no row lock, when the claim looked.
    misses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claimer(i: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                start.wait()
                for n in range(CLAIMS_PER_THREAD):
                    got = scalar(
                        c,
                        "select prebuilds.claim_prebuild(%s, %s, %s)",
                        (web, users[i], f"ws-{i}-{n}"),
                    )
                    if got is not None:
                        with lock:
                            hits.append(got)
                        continue
                    with c.transaction(force_rollback=True):
                        xid = scalar(c, "select pg_current_xact_id()::text::bigint")
                    with lock:
                        misses.append(xid)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors

    assert len(hits) == POOL
    assert len(set(hits)) == POOL, "a workspace was claimed twice"
    assert len(misses) == THREADS * CLAIMS_PER_THREAD - POOL
    # A false miss would leave a prebuild that some claim started after the miss went on to
    # take: every claim's transaction must have got its xid before every miss returned.
    last_claim_xid = scalar(
        conn,
        f"select max({FULL_XMIN}) from prebuilds.workspace_builds as b "
        "where b.preset_id = %s and b.initiator_id <> prebuilds.system_user_id()",
        (web,),
    )
    assert min(misses) > last_claim_xid, "a claim returned null while a prebuild was free"

    # Each of the pool's prebuilds went to exactly one person, with one claim build.
    row = conn.execute(
        """
        select
            count(*) filter (where w.owner_id <> prebuilds.system_user_id()),
            count(*) filter (where w.latest_build_number = 2),
            count(*) filter (where w.owner_id = prebuilds.system_user_id())
        from prebuilds.workspaces as w
        where w.template_id = (select t.id from prebuilds.templates as t where t.name = 'web')
        """
    ).fetchone()
    assert row == (POOL, POOL, 0)
    untouched = (
        "select count(*) from prebuilds.workspaces "
        "where current_preset_id = %s and owner_id = prebuilds.system_user_id()"
    )
    assert scalar(conn, untouched, (other,)) == 5, "a claim took another preset's prebuild"

    # Counted once per claim, whatever the shards; the metrics read the same total.
    assert (
        scalar(
            conn,
            "select sum(claimed) from prebuilds.preset_counters where preset_id = %s",
            (web,),
        )
        == POOL
    )
    assert scalar(conn, query("metrics_counters")) == 0  # created: none by create_prebuild
    metrics = conn.execute(query("metrics_counters")).fetchone()
    assert metrics is not None and metrics[2] == POOL
    assert scalar(
        conn,
        "select count(*) from prebuilds.preset_counters where preset_id = %s and claimed > 0",
        (web,),
    ) in range(1, 17)
