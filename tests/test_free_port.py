"""free_port: a port promised to one caller, which nobody else takes before its server binds it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

from workbook.services import base


def test_ports_come_from_outside_the_kernels_ephemeral_range_and_are_bindable():
    """bind(0) and outgoing connections take ports from the ephemeral range; ours never come from it."""
    low, high = base._ephemeral_range()
    ports = [base.free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports), f"a port was handed out twice: {ports}"
    inside = [port for port in ports if low <= port <= high]
    assert not inside, f"ports inside the ephemeral range {low}-{high}: {inside}"
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # raises if something already holds it


def test_processes_asking_at_once_never_get_the_same_port(tmp_path):
    """xdist workers and parallel gradings share the ledger: no port goes to two of them."""
    script = textwrap.dedent("""
        import json, sys
        from workbook.services.base import free_port
        print(json.dumps([free_port() for _ in range(40)]))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    handed = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    every = [port for ports in handed for port in ports]
    assert len(set(every)) == len(every) == 160, "two processes were promised the same port"


def test_a_port_promised_earlier_is_skipped_until_its_hold_ends(monkeypatch, tmp_path):
    """The ledger forgets a promise after PORT_HOLD_SECONDS, so the range never runs out."""
    monkeypatch.setattr(base, "_ledger_path", lambda: tmp_path / "ports.ledger")  # not the shared one
    first = base.free_port()
    monkeypatch.setattr(base, "_ports_handed_out", set())  # as if another process asked
    monkeypatch.setattr(base, "_port_candidates", lambda: [first])
    second = base.free_port()
    assert second != first, "a port another process was promised moments ago was handed out again"
    monkeypatch.setattr(base, "PORT_HOLD_SECONDS", 0.0)
    assert base.free_port() == first, "a promise past its hold should be forgotten"


def test_a_ledger_held_or_made_by_someone_else_is_not_waited_for(monkeypatch, tmp_path):
    """Another process holding the ledger's lock (learner code under sealed grading, say) cannot
    stop the graders: free_port gives up the ledger after LEDGER_WAIT_SECONDS, never hangs."""
    ledger = tmp_path / "ports.ledger"
    monkeypatch.setattr(base, "_ledger_path", lambda: ledger)
    monkeypatch.setattr(base, "LEDGER_WAIT_SECONDS", 0.3)
    base.free_port()
    assert oct(ledger.stat().st_mode & 0o777) == oct(0o600), "the ledger should be private to its user"
    with open(ledger) as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        port = base.free_port()
        assert time.monotonic() - started < 3, "free_port should not wait long for a held ledger"
    low, high = base._ephemeral_range()
    assert not low <= port <= high, "without the ledger, ports still come from outside the ephemeral range"
    ledger.write_text("1 9999999999\n")  # a promise from the future (a tampered ledger) is dropped
    os.chmod(ledger, 0o644)
    with base._port_ledger() as promised:
        assert 1 not in promised
    assert oct(ledger.stat().st_mode & 0o777) == oct(0o600), "a ledger others can read is made private"
