"""Benchmark: publishing scores to business systems, against hand-written client code.

    python benchmarks/publish.py [--rows N] [--json] [--cases postgres,rabbitmq,nats]

The warehouse holds N score rows of one day (one per customer, each with a CRM id). Cases:

- `postgres`: Fabric's full publish of the N rows to an empty PostgreSQL table (gate, stage
  into `publish.outbox`, deliver in batches, snapshot and per-record `publish.sync_log`
  included) against a hand-written `COPY` into a staging table + `INSERT ... ON CONFLICT` into
  the same kind of table (baseline `copy+upsert`, reading the same rows from the warehouse) and
  against a raw `COPY` into an empty table without a key (`raw copy`).
- `postgres_republish`: after the full publish, 1% of the scores change and Fabric publishes
  again (only the changed records go out); the baseline is Fabric's own full publish, goal
  ratio >= 10 (the re-publish takes at most 10% of the full time).
- `rabbitmq`, `nats`: N CloudEvents through Fabric (outbox included) to RabbitMQ with publisher
  confirms / NATS JetStream with `Nats-Msg-Id`, against a bare client loop (pika's
  SelectConnection / nats-py, the same pipelining: up to 2,000 / 4,000 unconfirmed messages in
  flight; persistent and mandatory for RabbitMQ) publishing the same event bodies, built before
  its clock starts. The JSON lines add `fabric_msgs_per_s` and
  `baseline_msgs_per_s`.

Each timed run is a subprocess (`peak_rss_mb` is its own). `ratio = baseline_s / fabric_s`.
Servers: PostgreSQL 127.0.0.1:5432 (postgres, trust), RabbitMQ :5672 (guest), NATS :4222.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DAY = date(2026, 3, 31)
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


# ---------------------------------------------------------------- set-up (parent process)


def make_warehouse(rows: int, path: Path) -> None:
    """A warehouse with `rows` score rows for DAY (deterministic), scored by model churn v3."""
    from datetime import datetime

    from fabric.scoring.scores_table import WriteInfo, ensure_scores, replace_day
    from fabric.warehouse import Warehouse

    with Warehouse(path).connect() as con:
        ensure_scores(con)
        replace_day(
            con,
            DAY,
            f"""SELECT 'FC-' || lpad(printf('%x', i), 12, '0'), 100000 + i,
                       ((i * 7919) % 10007) / 10007.0, ((i * 7919) % 10007) >= 5003, 1, 0
                FROM range({rows}) t(i)""",
            WriteInfo(run_id="bench-score", scored_at=datetime(2026, 3, 31, 2), champion=("churn", 3)),
        )


def config_file(work: Path, warehouse: Path, publishers: dict[str, Any]) -> Path:
    data = yaml.safe_load((REPO / "fabric.yaml").read_text())
    data["warehouse"]["path"] = str(warehouse)
    data["publishers"] = publishers
    path = work / "fabric.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def pg(database: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(**PG, dbname=database, autocommit=True)


def timed(runner: str, **args: Any) -> dict[str, Any]:
    """Run `runner` in a child process; its seconds and peak RSS."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", runner, json.dumps(args, default=str)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{runner} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- timed runs (child process)


def _publish(args: dict[str, Any]) -> float:
    from fabric.config import load_config
    from fabric.partitions import Window
    from fabric.publish import publish
    from fabric.warehouse import Warehouse

    config = load_config(args["config"])
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    started = time.perf_counter()
    result = publish(
        config, warehouse, args["target"], Window(DAY, DAY), str(uuid.uuid4()), gate=lambda c, d: None
    )
    seconds = time.perf_counter() - started
    assert result.pending == 0 and result.delivery.dead_lettered == 0, result.metadata()
    assert result.delivered == args["expect"], (result.delivered, args["expect"])
    return seconds


def _score_rows(warehouse: str) -> Any:
    with duckdb.connect(warehouse, read_only=True) as con:
        return con.execute(
            "SELECT crm_customer_id AS crm_id, score AS churn_score, decision AS churn_decision, "
            "model_name, model_version, partition_date AS scored_for, lineage_id "
            f"FROM scores.churn_scores WHERE partition_date = '{DAY}'"
        ).to_arrow_table()


def _copy_upsert(args: dict[str, Any]) -> float:
    from fabric.publish.targets.postgres import csv_bytes

    started = time.perf_counter()
    data = csv_bytes(_score_rows(args["warehouse"]))
    with pg(args["database"]) as con:
        con.autocommit = False
        with con.transaction(), con.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE staged (crm_id BIGINT, churn_score DOUBLE PRECISION, "
                "churn_decision BOOLEAN, "
                "model_name TEXT, model_version INTEGER, scored_for DATE, lineage_id TEXT) ON COMMIT DROP"
            )
            with cur.copy("COPY staged FROM STDIN (FORMAT csv, HEADER true)") as copy:
                copy.write(data)
            cur.execute(
                f"INSERT INTO {args['table']} AS t SELECT *, now() FROM staged "
                "ON CONFLICT (crm_id) DO UPDATE SET "
                "churn_score = EXCLUDED.churn_score, churn_decision = EXCLUDED.churn_decision, "
                "model_name = EXCLUDED.model_name, model_version = EXCLUDED.model_version, "
                "scored_for = EXCLUDED.scored_for, lineage_id = EXCLUDED.lineage_id, "
                "published_at = EXCLUDED.published_at WHERE EXCLUDED.scored_for >= t.scored_for"
            )
    return time.perf_counter() - started


def _raw_copy(args: dict[str, Any]) -> float:
    from fabric.publish.targets.postgres import csv_bytes

    started = time.perf_counter()
    data = csv_bytes(_score_rows(args["warehouse"]))
    copy_sql = f"COPY {args['table']} FROM STDIN (FORMAT csv, HEADER true)"
    with pg(args["database"]) as con, con.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.write(data)
    return time.perf_counter() - started


def _bodies(warehouse: str) -> list[tuple[str, bytes]]:
    """The same CloudEvents Fabric sends (same payload JSON), built before the clock starts."""
    from fabric.publish.cloudevents import events
    from fabric.publish.payload import PAYLOAD_FIELDS

    fields = ", ".join(f"'{n}', {n}" for n in PAYLOAD_FIELDS)
    with duckdb.connect(warehouse, read_only=True) as con:
        batch = con.execute(
            f"""SELECT crm_customer_id::VARCHAR AS entity_key, sha256(payload) AS message_id,
                       'create' AS operation, TIMESTAMP '{DAY} 03:00:00' AS enqueued_at, lineage_id, payload
                FROM (SELECT *, json_object({fields})::VARCHAR AS payload FROM scores.churn_scores)"""
        ).to_arrow_table()
    return [(i, body.encode()) for i, body in events(batch, "urn:fabric:bench:publish:bare")]


def _bare_rabbitmq(args: dict[str, Any]) -> float:
    """pika's SelectConnection with callbacks, the fastest bare client tried (aio-pika's loop took ~10x
    the client CPU per message): persistent, mandatory, up to 2,000 unconfirmed; done when the
    broker has acked every message (a nack or a return fails the run)."""
    import pika

    bodies = _bodies(args["warehouse"])
    state = {"sent": 0, "acked": 0, "refused": 0, "started": 0.0, "seconds": 0.0}
    unconfirmed: collections.deque[int] = collections.deque()  # delivery tags, ascending

    def pump(channel: Any) -> None:
        while state["sent"] < len(bodies) and len(unconfirmed) < 2_000:
            message_id, body = bodies[int(state["sent"])]
            channel.basic_publish(
                args["exchange"], "scores", body,
                pika.BasicProperties(message_id=message_id, delivery_mode=2), mandatory=True,
            )  # fmt: skip
            state["sent"] += 1
            unconfirmed.append(int(state["sent"]))

    def confirmed(channel: Any, frame: Any) -> None:
        method = frame.method
        last, settled = method.delivery_tag, 1
        if method.multiple:
            settled = 0
            while unconfirmed and unconfirmed[0] <= last:
                unconfirmed.popleft()
                settled += 1
        else:
            unconfirmed.remove(last)
        state["acked"] += settled
        state["refused"] += settled if isinstance(method, pika.spec.Basic.Nack) else 0
        if state["acked"] == len(bodies):
            state["seconds"] = time.perf_counter() - state["started"]
            connection.close()
        else:
            pump(channel)

    def declared(channel: Any, steps: list[Any]) -> None:
        """Run the declarations one after the other, then start the clock and publish."""
        if steps:
            steps[0](lambda _frame: declared(channel, steps[1:]))
            return
        state["started"] = time.perf_counter()
        pump(channel)

    def opened(channel: Any) -> None:
        channel.add_on_return_callback(lambda *_: state.__setitem__("refused", state["refused"] + 1))
        declared(channel, [
            lambda done: channel.confirm_delivery(lambda frame: confirmed(channel, frame), callback=done),
            lambda done: channel.exchange_declare(args["exchange"], "topic", durable=True, callback=done),
            lambda done: channel.queue_declare(args["queue"], durable=True, callback=done),
            lambda done: channel.queue_bind(args["queue"], args["exchange"], "scores", callback=done),
        ])  # fmt: skip

    connection = pika.SelectConnection(
        pika.ConnectionParameters("127.0.0.1"),
        on_open_callback=lambda c: c.channel(on_open_callback=opened),
        on_close_callback=lambda c, _exc: c.ioloop.stop(),
    )
    connection.ioloop.start()
    assert state["acked"] == len(bodies) and state["refused"] == 0, state
    return float(state["seconds"])


def _bare_nats(args: dict[str, Any]) -> float:
    import nats
    from nats.js.api import StreamConfig

    bodies = _bodies(args["warehouse"])

    async def run() -> float:
        nc = await nats.connect(["nats://127.0.0.1:4222"])
        js = nc.jetstream(publish_async_max_pending=4_000)
        await js.add_stream(
            StreamConfig(name=args["stream"], subjects=[args["subject"]], duplicate_window=86_400)
        )
        started = time.perf_counter()
        futures = [
            await js.publish_async(args["subject"], body, headers={"Nats-Msg-Id": message_id})
            for message_id, body in bodies
        ]
        await asyncio.gather(*futures)
        seconds = time.perf_counter() - started
        await nc.close()
        return seconds

    return asyncio.run(run())


RUNNERS = {
    "publish": _publish,
    "copy_upsert": _copy_upsert,
    "raw_copy": _raw_copy,
    "bare_rabbitmq": _bare_rabbitmq,
    "bare_nats": _bare_nats,
}


def child(runner: str, args: dict[str, Any]) -> None:
    seconds = RUNNERS[runner](args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak_rss_mb": round(peak, 1)}))


# ---------------------------------------------------------------- cases


def _line(
    case: str, rows: int, size: int, fabric: dict[str, Any], baseline: str, base: dict[str, Any]
) -> dict[str, Any]:
    return {
        "case": case, "rows": rows, "bytes": size, "fabric_s": round(fabric["seconds"], 3),
        "baseline": baseline, "baseline_s": round(base["seconds"], 3),
        "ratio": round(base["seconds"] / fabric["seconds"], 3),
        "peak_rss_mb": fabric["peak_rss_mb"], "baseline_peak_rss_mb": base["peak_rss_mb"],
    }  # fmt: skip


def _payload_bytes(warehouse: Path) -> int:
    from fabric.publish.payload import PAYLOAD_FIELDS

    fields = ", ".join(f"'{n}', {n}" for n in PAYLOAD_FIELDS)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute(
            f"SELECT sum(length(json_object({fields})::VARCHAR)) FROM scores.churn_scores"
        ).fetchone()
    return int(row[0]) if row and row[0] else 0


def case_postgres(rows: int, work: Path, base: Path) -> list[dict[str, Any]]:
    database = f"fabric_bench_{uuid.uuid4().hex[:8]}"
    with pg() as admin:
        admin.execute(f"CREATE DATABASE {database}")
    try:
        warehouse = work / "pg.duckdb"
        shutil.copy(base, warehouse)
        target = {
            "kind": "postgres",
            **PG,
            "database": database,
            "table": "crm_scores",
            "batch_size": 250_000,
        }
        cfg = config_file(work, warehouse, {"crm_pg": target})
        full = timed("publish", config=cfg, target="crm_pg", expect=rows)
        with pg(database) as con:
            con.execute(
                "CREATE TABLE crm_upsert (crm_id BIGINT PRIMARY KEY, churn_score DOUBLE PRECISION, "
                "churn_decision BOOLEAN, model_name TEXT, model_version INTEGER, scored_for DATE, "
                "lineage_id TEXT, published_at TIMESTAMPTZ)"
            )
            con.execute("CREATE TABLE crm_raw (LIKE crm_upsert)")
            con.execute("ALTER TABLE crm_raw DROP CONSTRAINT IF EXISTS crm_raw_pkey")
            con.execute("ALTER TABLE crm_raw DROP COLUMN published_at")
        upsert = timed("copy_upsert", warehouse=base, database=database, table="crm_upsert")
        raw = timed("raw_copy", warehouse=base, database=database, table="crm_raw")
        with pg(database) as con:
            assert con.execute("SELECT count(*) FROM crm_scores").fetchone() == (rows,)
            assert con.execute("SELECT count(*) FROM crm_upsert").fetchone() == (rows,)
        # 1% of the scores change, then Fabric publishes again
        changed = max(1, rows // 100)
        with duckdb.connect(str(warehouse)) as con:
            con.execute(
                "UPDATE scores.churn_scores_rows SET score = score / 2 + 0.0001 "
                f"WHERE crm_customer_id < {100000 + changed}"
            )
        again = timed("publish", config=cfg, target="crm_pg", expect=changed)
        size = _payload_bytes(base)
        return [
            _line("postgres", rows, size, full, "copy+upsert", upsert),
            _line("postgres", rows, size, full, "raw copy", raw),
            _line("postgres_republish_1pct", rows, size, again, "fabric full publish", full),
        ]
    finally:
        with pg() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def _purge(queue: str, rows: int) -> None:
    """Check that `rows` messages reached `queue`, then empty it (a broker holding millions of
    messages pages them out, which would slow whichever side runs second)."""
    import pika

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    try:
        assert connection.channel().queue_purge(queue).method.message_count == rows, queue
    finally:
        connection.close()


def case_rabbitmq(rows: int, work: Path, base: Path) -> list[dict[str, Any]]:
    import pika

    suffix = uuid.uuid4().hex[:8]
    warehouse = work / "rabbitmq.duckdb"
    shutil.copy(base, warehouse)
    queues = [f"fabric_bench_{suffix}", f"fabric_bench_bare_{suffix}"]
    target = {
        "kind": "rabbitmq", "exchange": f"fabric.bench.{suffix}", "routing_key": "scores",
        "queue": queues[0], "dead_letter_exchange": f"fabric.bench.{suffix}.dlx", "batch_size": 250_000,
    }  # fmt: skip
    cfg = config_file(work, warehouse, {"bus": target})
    try:
        fabric = timed("publish", config=cfg, target="bus", expect=rows)
        _purge(queues[0], rows)  # the bare loop starts on an empty broker too
        bare = timed("bare_rabbitmq", warehouse=base, exchange=f"fabric.bench.bare.{suffix}", queue=queues[1])
        _purge(queues[1], rows)
    finally:
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
        for exchange in (target["exchange"], target["dead_letter_exchange"], f"fabric.bench.bare.{suffix}"):
            channel.exchange_delete(exchange)
        connection.close()
    line = _line("rabbitmq", rows, _payload_bytes(base), fabric, "pika async loop, confirms", bare)
    line.update(
        fabric_msgs_per_s=round(rows / fabric["seconds"]), baseline_msgs_per_s=round(rows / bare["seconds"])
    )
    return [line]


def case_nats(rows: int, work: Path, base: Path) -> list[dict[str, Any]]:
    import nats

    suffix = uuid.uuid4().hex[:8].upper()
    warehouse = work / "nats.duckdb"
    shutil.copy(base, warehouse)
    streams = [f"FABRIC_BENCH_{suffix}", f"FABRIC_BENCH_BARE_{suffix}"]
    target = {
        "kind": "nats",
        "stream": streams[0],
        "subject": f"fabric.bench.{suffix.lower()}",
        "batch_size": 250_000,
    }
    cfg = config_file(work, warehouse, {"events": target})
    try:
        fabric = timed("publish", config=cfg, target="events", expect=rows)
        bare = timed(
            "bare_nats", warehouse=base, stream=streams[1], subject=f"fabric.bench.bare.{suffix.lower()}"
        )
    finally:

        async def drop() -> None:
            nc = await nats.connect(["nats://127.0.0.1:4222"])
            js = nc.jetstream()
            for stream in streams:
                with contextlib.suppress(Exception):  # never created (the run failed before)
                    await js.delete_stream(stream)
            await nc.close()

        asyncio.run(drop())
    line = _line("nats", rows, _payload_bytes(base), fabric, "nats-py publish_async loop", bare)
    line.update(
        fabric_msgs_per_s=round(rows / fabric["seconds"]), baseline_msgs_per_s=round(rows / bare["seconds"])
    )
    return [line]


CASES = {"postgres": case_postgres, "rabbitmq": case_rabbitmq, "nats": case_nats}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], json.loads(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fabric-bench-publish-") as temp:
        work = Path(temp)
        base = work / "base_warehouse.duckdb"
        make_warehouse(options.rows, base)
        for name in options.cases.split(","):
            for line in CASES[name](options.rows, work, base):
                if options.json:
                    print(json.dumps(line), flush=True)
                else:
                    extra = (
                        f"  ({line['fabric_msgs_per_s']:,} vs {line['baseline_msgs_per_s']:,} msgs/s)"
                        if "fabric_msgs_per_s" in line
                        else ""
                    )
                    print(
                        f"{line['case']:<26} {line['rows']:>9,} rows  fabric {line['fabric_s']:>8.2f} s  "
                        f"{line['baseline']:<26} {line['baseline_s']:>8.2f} s  ratio {line['ratio']:.2f}"
                        f"  rss {line['peak_rss_mb']:.0f} MB{extra}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
