#!/usr/bin/env python3
"""Bounded, continuous traffic against the compose stack, for scripts/e2e-compose.sh.

Readers GET a list of articles and one known article; every non-200 answer or connection error
is a failed read (nginx must hide replicas going away). Writers create articles with an
Idempotency-Key and retry with the same key on a connection error, 502, 503 or 409, as a client
of the API should; a write is acknowledged once a 201 (or its replay) comes back. The summary
(JSON on stdout) lists the acknowledged article slugs, so the caller can compare them with what
Redis holds: none lost, none duplicated.

Stops after --duration seconds, after --max-requests requests, or when --stop-file exists.
Only talks to the given base URL (the stack's nginx on the loopback interface).
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

RETRY_STATUSES = {409, 502, 503}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.reads_ok = 0
        self.reads_failed = 0
        self.read_failures = []
        self.writes_acked = 0
        self.writes_unacked = 0
        self.write_retries = 0
        self.write_failures = []
        self.acked_slugs = []
        self.replicas = {}
        # Wall-clock start (time.time()) of every failed read, and per wall-clock second the
        # reads that started in it: [ok, failed]. The caller compares them with the moment it
        # broke something.
        self.read_failure_starts = []
        self.reads_by_second = {}

    def count_request(self, served_by):
        with self.lock:
            self.requests += 1
            if served_by:
                self.replicas[served_by] = self.replicas.get(served_by, 0) + 1


def request(base, method, path, token=None, body=None, key=None, timeout=10.0):
    """Returns (status, headers, body bytes); status 0 for a connection error."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Token " + token)
    if key:
        req.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()
    except (urllib.error.URLError, OSError) as err:
        return 0, {}, str(err).encode()


class Traffic:
    def __init__(self, args):
        self.args = args
        self.stats = Stats()
        self.deadline = time.monotonic() + args.duration

    def running(self):
        if time.monotonic() >= self.deadline:
            return False
        if self.args.stop_file and os.path.exists(self.args.stop_file):
            return False
        return self.stats.requests < self.args.max_requests

    def reader(self):
        paths = ["/api/articles?limit=5"]
        if self.args.read_slug:
            paths.append("/api/articles/" + self.args.read_slug)
        i = 0
        while self.running():
            path = paths[i % len(paths)]
            i += 1
            started = time.time()
            status, headers, body = request(self.args.base_url, "GET", path, self.args.token)
            self.stats.count_request(headers.get("X-Served-By") if headers else None)
            with self.stats.lock:
                second = self.stats.reads_by_second.setdefault(int(started), [0, 0])
                if status == 200:
                    self.stats.reads_ok += 1
                    second[0] += 1
                else:
                    self.stats.reads_failed += 1
                    second[1] += 1
                    self.stats.read_failure_starts.append(round(started, 3))
                    if len(self.stats.read_failures) < 20:
                        self.stats.read_failures.append(
                            {"path": path, "status": status, "body": body[:200].decode("utf-8", "replace"),
                             "at": round(time.monotonic() - self.start, 2)})
            time.sleep(self.args.pause)

    def write_once(self, n):
        key = str(uuid.uuid4())
        body = {"article": {"title": "traffic %s %d" % (key[:8], n), "description": "e2e write",
                            "body": "written under load with Idempotency-Key " + key,
                            "tagList": ["e2e-traffic"]}}
        give_up = time.monotonic() + self.args.write_retry_seconds
        attempt = 0
        while True:
            attempt += 1
            status, headers, raw = request(self.args.base_url, "POST", "/api/articles", self.args.token, body, key)
            self.stats.count_request(headers.get("X-Served-By") if headers else None)
            if status in (200, 201):
                slug = json.loads(raw)["article"]["slug"]
                with self.stats.lock:
                    self.stats.writes_acked += 1
                    self.stats.acked_slugs.append(slug)
                return
            retryable = status == 0 or status in RETRY_STATUSES
            if not retryable or time.monotonic() >= give_up:
                with self.stats.lock:
                    self.stats.writes_unacked += 1
                    if len(self.stats.write_failures) < 20:
                        self.stats.write_failures.append(
                            {"status": status, "attempts": attempt, "key": key,
                             "body": raw[:200].decode("utf-8", "replace")})
                return
            with self.stats.lock:
                self.stats.write_retries += 1
            time.sleep(0.2)

    def writer(self, index):
        n = 0
        while self.running():
            self.write_once(index * 1_000_000 + n)
            n += 1
            time.sleep(self.args.write_pause)

    def run(self):
        self.start = time.monotonic()
        threads = [threading.Thread(target=self.reader) for _ in range(self.args.readers)]
        threads += [threading.Thread(target=self.writer, args=(i,)) for i in range(self.args.writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        s = self.stats
        return {
            "seconds": round(time.monotonic() - self.start, 1),
            "requests": s.requests,
            "reads_ok": s.reads_ok,
            "reads_failed": s.reads_failed,
            "read_failures": s.read_failures,
            "writes_acked": s.writes_acked,
            "writes_unacked": s.writes_unacked,
            "write_retries": s.write_retries,
            "write_failures": s.write_failures,
            "acked_slugs": s.acked_slugs,
            "replicas": s.replicas,
            "read_failure_starts": sorted(s.read_failure_starts),
            "reads_by_second": {str(k): v for k, v in sorted(s.reads_by_second.items())},
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="nginx, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", required=True, help="JWT of a registered user")
    parser.add_argument("--read-slug", help="an existing article to read")
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between a reader's requests")
    parser.add_argument("--write-pause", type=float, default=0.05, help="seconds between a writer's writes")
    parser.add_argument("--write-retry-seconds", type=float, default=30.0,
                        help="how long one write is retried before it counts as unacknowledged")
    parser.add_argument("--duration", type=float, default=30.0, help="upper bound in seconds")
    parser.add_argument("--max-requests", type=int, default=50_000, help="upper bound on requests")
    parser.add_argument("--stop-file", help="stop as soon as this file exists")
    args = parser.parse_args()
    if not args.base_url.startswith(("http://127.", "http://localhost")):
        parser.error("traffic only goes to the loopback interface")
    json.dump(Traffic(args).run(), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
