#!/usr/bin/env python3
"""Coordinator high availability, measured with real processes and a real etcd.

  bench/ha.py failover [--kills 20] [--stops 20] [--etcd-members 3]
  bench/ha.py throughput [--rounds 3] [--tasks 100000]

failover: two coordinators elected through etcd (3 members on loopback, started by
scripts/etcd.sh), two workers of 4 slots given both URLs, a job of 20 ms tasks. The
leader is killed with SIGKILL (then restarted as a standby) or paused with SIGSTOP past
its lease (then resumed: it must step down). A poller reads the job's commit count from
every coordinator every 10 ms. Per fault it reports: fault -> new leader ready, fault ->
first commit by the new leader, and last commit seen from the old leader -> first commit
by the new one. A woken leader that still serves the job afterwards is counted as an
error.

throughput: `essaim bench taskfarm` (no-op throughput and p99 round trip) against a single
coordinator (redb journal) and against an HA leader (journal in etcd), interleaved.

Prints `METRIC name value` lines and a summary. ESSAIM_BIN overrides the binary
(default target/release/essaim; build it with `cargo build --release -p essaim`).
"""

import argparse, json, os, re, signal, socket, statistics, subprocess, sys, tempfile, threading, time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("ESSAIM_BIN", os.path.join(REPO, "target/release/essaim"))
ETCD_SH = os.path.join(REPO, "scripts/etcd.sh")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, path, timeout=0.5):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except Exception:
        return None, b""


class Etcd:
    def __init__(self, members, work):
        self.dirs, clients, peers = [], [free_port() for _ in range(members)], [free_port() for _ in range(members)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(peers))
        procs = []
        for i in range(members):
            d = os.path.join(work, f"etcd{i}")
            os.makedirs(d)
            self.dirs.append(d)
            env = dict(os.environ, ETCD_PORT=str(clients[i]), ESSAIM_ETCD_PEER_PORT=str(peers[i]),
                       ESSAIM_ETCD_NAME=f"m{i}", ESSAIM_ETCD_INITIAL_CLUSTER=initial)
            procs.append(subprocess.Popen([ETCD_SH, "start", d], env=env, stdout=subprocess.DEVNULL))
        for p in procs:
            if p.wait() != 0:
                sys.exit("etcd did not start")
        self.endpoints = ",".join(f"http://127.0.0.1:{p}" for p in clients)

    def stop(self):
        for d in self.dirs:
            subprocess.run([ETCD_SH, "stop", d], stdout=subprocess.DEVNULL)


class Cluster:
    def __init__(self, work, etcd, coordinators=2, workers=2, slots=4, cluster="bench"):
        self.work, self.etcd, self.cluster = work, etcd, cluster
        self.ports = [free_port() for _ in range(coordinators)]
        self.procs = [None] * coordinators
        for i in range(coordinators):
            self.start(i)
        self.urls = ",".join(f"http://127.0.0.1:{p}" for p in self.ports)
        self.workers = [self.spawn(f"worker{i}", ["worker", "--coordinator", self.urls, "--slots", str(slots)])
                        for i in range(workers)]

    def spawn(self, name, args):
        log = open(os.path.join(self.work, f"{name}.log"), "a")
        return subprocess.Popen([BIN] + args, stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="warn"))

    def start(self, i):
        args = ["coordinator", "--listen", f"127.0.0.1:{self.ports[i]}", "--cluster", self.cluster,
                "--data-dir", os.path.join(self.work, f"data{i}")]
        if self.etcd:
            args += ["--etcd", self.etcd.endpoints]
        self.procs[i] = self.spawn(f"coordinator{i}", args)

    def ready(self):
        return [i for i, p in enumerate(self.ports) if self.procs[i] and http(p, "/readyz")[0] == 200]

    def leader(self, other_than=None, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            ready = self.ready()
            if len(ready) == 1 and ready[0] != other_than:
                return ready[0]
            time.sleep(0.01)
        sys.exit("no leader elected")

    def stop(self):
        for p in self.procs + self.workers:
            if p:
                try:
                    p.send_signal(signal.SIGCONT)
                    p.kill()
                except ProcessLookupError:
                    pass


def poll_commits(cluster, job, samples, stop):
    while not stop.is_set():
        for i, port in enumerate(cluster.ports):
            status, body = http(port, f"/api/v1/jobs/{job}", timeout=0.2)
            if status == 200:
                samples.append((time.time(), i, json.loads(body)["job"]["tasks"]["succeeded"]))
        time.sleep(0.01)


def fault_figures(samples, old, new, fault_at):
    before = [(t, n) for t, i, n in samples if i == old and t <= fault_at]
    last_old = next((t for (t, n), (_, m) in zip(reversed(before), list(reversed(before))[1:]) if n > m), None)
    after = [(t, n) for t, i, n in samples if i == new and t > fault_at]
    if not after:
        return None, None
    first = after[0][1]
    first_commit = next((t for t, n in after if n > first), None)
    return last_old, first_commit


def failover(args):
    work = tempfile.mkdtemp(prefix="essaim-bench-ha-")
    etcd = Etcd(args.etcd_members, work)
    cluster = Cluster(work, etcd)
    leader = cluster.leader()
    out = subprocess.run([BIN, "submit", "--coordinator", cluster.urls, "--kind", "sleep", "--payload", "20",
                          "--count", "1000000"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr)
    job = int(re.search(r"submitted job (\d+)", out.stdout + out.stderr).group(1))
    samples, stop = [], threading.Event()
    poller = threading.Thread(target=poll_commits, args=(cluster, job, samples, stop), daemon=True)
    poller.start()
    figures = {"kill": [], "stop": []}
    errors = 0
    faults = ["kill"] * args.kills + ["stop"] * args.stops
    faults = [f for pair in zip(faults[:args.kills], faults[args.kills:]) for f in pair] + faults[2 * min(args.kills, args.stops):]
    for n, fault in enumerate(faults):
        time.sleep(3)
        old = cluster.leader()
        at = time.time()
        cluster.procs[old].send_signal(signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
        new = cluster.leader(other_than=old)
        ready_at = time.time()
        end = time.time() + 30
        while time.time() < end and fault_figures(list(samples), old, new, at)[1] is None:
            time.sleep(0.01)
        last_old, first_new = fault_figures(list(samples), old, new, at)
        if fault == "kill":
            cluster.procs[old].wait()
            cluster.start(old)
        else:
            cluster.procs[old].send_signal(signal.SIGCONT)
            end = time.time() + 30
            while time.time() < end and http(cluster.ports[old], "/readyz")[0] != 503:
                time.sleep(0.05)
            if http(cluster.ports[old], f"/api/v1/jobs/{job}")[0] == 200 and cluster.leader() != old:
                errors += 1
        if first_new is None:
            errors += 1
            continue
        row = (ready_at - at, first_new - at, first_new - last_old if last_old else None)
        figures[fault].append(row)
        print(f"{fault} #{n}: new leader ready {row[0]:.2f} s, first commit {row[1]:.2f} s after the fault"
              + (f", {row[2]:.2f} s after the old leader's last" if row[2] else ""), flush=True)
    stop.set()
    cluster.stop()
    etcd.stop()
    for fault, rows in figures.items():
        for k, name in enumerate(["ready", "first_commit", "last_to_first_commit"]):
            values = sorted(r[k] for r in rows if r[k] is not None)
            if values:
                print(f"METRIC failover_{fault}_{name}_min_s {values[0]:.3f}")
                print(f"METRIC failover_{fault}_{name}_median_s {statistics.median(values):.3f}")
                print(f"METRIC failover_{fault}_{name}_max_s {values[-1]:.3f}")
        print(f"METRIC failover_{fault}_runs {len(rows)}")
    print(f"METRIC failover_errors {errors}")
    return 1 if errors else 0


def throughput(args):
    rc = 0
    for round_ in range(args.rounds):
        for mode in (["single", "ha"] if round_ % 2 == 0 else ["ha", "single"]):
            work = tempfile.mkdtemp(prefix=f"essaim-bench-{mode}-")
            etcd = Etcd(args.etcd_members, work) if mode == "ha" else None
            cluster = Cluster(work, etcd, coordinators=1, workers=2, slots=4)
            leader = cluster.leader()
            out = subprocess.run([BIN, "bench", "taskfarm", "--coordinator", f"http://127.0.0.1:{cluster.ports[leader]}",
                                  "--tasks", str(args.tasks)], capture_output=True, text=True)
            for line in out.stdout.splitlines():
                if line.startswith("METRIC "):
                    print(line.replace("METRIC ", f"METRIC {mode}_round{round_}_"), flush=True)
            rc |= out.returncode
            cluster.stop()
            if etcd:
                etcd.stop()
    return rc


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("failover")
    f.add_argument("--kills", type=int, default=20)
    f.add_argument("--stops", type=int, default=20)
    f.add_argument("--etcd-members", type=int, default=3)
    t = sub.add_parser("throughput")
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--tasks", type=int, default=100000)
    t.add_argument("--etcd-members", type=int, default=3)
    args = parser.parse_args()
    if not os.access(BIN, os.X_OK):
        sys.exit(f"{BIN} not found: cargo build --release -p essaim")
    sys.exit(failover(args) if args.command == "failover" else throughput(args))


if __name__ == "__main__":
    main()
