#!/usr/bin/env python3
"""Enqueue a snappea task from Python, with nothing but the standard library.

snappea's queue is one SQLite table, snappea_tasks, in DIR/snappea.db; the
README's "Enqueue from another language" describes its columns. A producer
inserts a row in an IMMEDIATE transaction, commits, and then creates the wake
file DIR/wakeup/wake (O_CREAT|O_EXCL) so that an idle daemon claims at once.

As a program:

    python3 enqueue.py --dir snappea-data snappea.echo '{"msg": "hello"}'
    python3 enqueue.py --dir snappea-data --delay 30 --key digest:7 app.digest '{"user": 7}'

prints the new task's id (or, for a --key a pending task holds, that task's
id on stderr and nothing on stdout). As a module: enqueue(...) below.
"""

import argparse
import json
import os
import sqlite3
import sys
import time

# How long a write waits for another process's write lock, in seconds. The
# daemon's claims are short; a few seconds covers a busy moment.
BUSY_TIMEOUT = 5.0


def enqueue(data_dir, task, args=None, *, priority=0, delay=0.0, max_attempts=0, timeout=0.0, key=None):
    """Queue task with args (any JSON-encodable value) and wake the daemon.

    delay and timeout are in seconds; the table holds nanoseconds, as
    integers. Returns (task_id, duplicate): duplicate is True when a pending
    task holds key, and then nothing was written and task_id is that task's.
    """
    db_path = os.path.join(data_dir, "snappea.db")
    # Refuse to create a database: a typo in the path would otherwise make
    # a queue no daemon reads.
    if not os.path.exists(db_path):
        raise FileNotFoundError(f"no snappea queue at {db_path}: start the daemon (or run `snappea migrate`) first")
    # allow_nan=False: NaN and Infinity are not JSON, and the table refuses them.
    encoded = json.dumps(args, allow_nan=False, separators=(",", ":"))
    now = time.time_ns()  # Unix nanoseconds, an integer; never time.time()
    run_at = now + int(delay * 1e9) if delay > 0 else 0  # 0: ready now
    # timeout= is SQLite's busy timeout. isolation_level=None: the module
    # starts no transactions of its own; we begin IMMEDIATE ourselves, so
    # the write lock is taken at BEGIN, inside the busy timeout. (A deferred
    # transaction that reads first and writes later can fail at once with
    # "database is locked", whatever the timeout.)
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # ON CONFLICT DO NOTHING: a pending task with the same key makes
            # the insert write nothing.
            cur = conn.execute(
                "INSERT INTO snappea_tasks"
                " (task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns, key)"
                " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT DO NOTHING",
                (task, encoded, now, int(priority), run_at, int(max_attempts), int(timeout * 1e9), key),
            )
            if cur.rowcount == 0:
                (task_id,) = conn.execute("SELECT id FROM snappea_tasks WHERE key = ?", (key,)).fetchone()
                conn.execute("COMMIT")
                return task_id, True
            task_id = cur.lastrowid
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    # After the commit, never before: a daemon woken earlier could look
    # before the row is visible.
    try:
        wake(os.path.join(data_dir, "wakeup"))
    except OSError as e:
        # The task is queued; the daemon's poll (every few seconds) finds
        # it. Do not enqueue again.
        print(f"task {task_id} queued, but the daemon could not be woken: {e}", file=sys.stderr)
    return task_id, False


def wake(wakeup_dir):
    """Create the wake file exclusively, as snappea's producers do.

    An existing file is a wake already pending, not an error. A missing
    directory is created (mode 0700) and the file tried once more.
    """
    path = os.path.join(wakeup_dir, "wake")
    for last in (False, True):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return
        except FileExistsError:
            return
        except FileNotFoundError:
            if last:
                raise
            os.makedirs(wakeup_dir, mode=0o700, exist_ok=True)


def main():
    p = argparse.ArgumentParser(description="Enqueue a snappea task.")
    p.add_argument("--dir", default=os.environ.get("SNAPPEA_DIR", "snappea-data"), help="the data directory")
    p.add_argument("--priority", type=int, default=0, help="higher is claimed first")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before the task may run")
    p.add_argument("--max-attempts", type=int, default=0, help="attempts allowed, the first included")
    p.add_argument("--timeout", type=float, default=0.0, help="the handler's deadline, in seconds")
    p.add_argument("--key", default=None, help="at most one pending task per key")
    p.add_argument("task", help="the registered task name")
    p.add_argument("args", nargs="?", default="null", help="the arguments, as JSON")
    a = p.parse_args()
    try:
        args = json.loads(a.args)
    except ValueError as e:
        p.error(f"arguments are not valid JSON: {e.msg} at position {e.pos}")
    try:
        task_id, duplicate = enqueue(a.dir, a.task, args, priority=a.priority, delay=a.delay,
                                     max_attempts=a.max_attempts, timeout=a.timeout, key=a.key)
    except (OSError, sqlite3.Error) as e:
        print(f"enqueue {a.task}: {e}", file=sys.stderr)
        return 1
    if duplicate:
        print(f"not enqueued: task {task_id} is pending with key {a.key!r}", file=sys.stderr)
    else:
        print(task_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
