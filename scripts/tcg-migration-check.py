#!/usr/bin/env python3
"""Migrates one busy guest back and forth between two QEMUs on this machine (TCG, plain TCP on
loopback, QEMU's default migration parameters) and counts the migrations after which the guest
is broken (no more counter lines within 20 s, or an oops, panic or BUG on its serial console).
It checks QEMU itself, without vinfra: under TCG, QEMU before 9.0 loses writes a guest makes
during a migration when its RAM is a whole number of MiB, and not when it is 8 KiB more
(docs/design.md, "A QEMU bug and how the agent avoids it").

    scripts/tcg-migration-check.py MEMORY ROUNDS DIRTY_MIB

MEMORY as QEMU's -m takes it (128M, or 131080k for 128 MiB padded), ROUNDS migrations, the
guest rewriting DIRTY_MIB MiB (vinfra.dirty; 0: an idle guest). Needs QEMU and the guest image
(VINFRA_GUEST_DIR, default /var/cache/vinfra/guest). Prints each migration's total time,
downtime and setup time (ms) and ends with "RESULT mem=… rounds=… broken=N".
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

mem, rounds, dirty = sys.argv[1], int(sys.argv[2]), sys.argv[3]
guest = os.environ.get("VINFRA_GUEST_DIR", "/var/cache/vinfra/guest")
work = tempfile.mkdtemp(prefix="tcg-migration-check.")


def qemu(tag, incoming=None):
    args = ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-smp", "1", "-m", mem,
            "-nodefaults", "-no-user-config", "-display", "none",
            "-chardev", f"file,id=s,path={work}/{tag}.log", "-serial", "chardev:s",
            "-qmp", f"unix:{work}/{tag}.qmp,server=on,wait=off",
            "-kernel", f"{guest}/vmlinuz", "-initrd", f"{guest}/initrd.img",
            "-append", f"console=ttyS0 quiet vinfra.dirty={dirty}"]
    if incoming:
        args += ["-incoming", incoming]
    p = subprocess.Popen(args, stderr=open(f"{work}/{tag}.err", "w"))
    for _ in range(200):
        if os.path.exists(f"{work}/{tag}.qmp"):
            break
        time.sleep(0.05)
    s = socket.socket(socket.AF_UNIX)
    s.connect(f"{work}/{tag}.qmp")
    f = s.makefile("rw")
    f.readline()
    cmd(f, "qmp_capabilities")
    return p, f


def cmd(f, name, **arguments):
    f.write(json.dumps({"execute": name, "arguments": arguments}) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r


def log(tag):
    with open(f"{work}/{tag}.log", errors="replace") as f:
        return f.read()


def counters(text):
    return [int(line.split()[1]) for line in text.splitlines()
            if line.startswith("VINFRA-COUNTER ")]


def wait_counting(tag, n, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if len(counters(log(tag))) >= n:
            return True
        time.sleep(0.1)
    return False


def boot(tag):
    p, f = qemu(tag)
    if not wait_counting(tag, 4, 120):
        sys.exit(f"the guest did not boot ({work}/{tag}.log)")
    return p, f


src, sf = boot("r0")
port = 47000 + os.getpid() % 1000
broken = 0
for r in range(1, rounds + 1):
    tag = f"r{r}"
    dst, df = qemu(tag, f"tcp:127.0.0.1:{port}")
    port += 1
    cmd(sf, "migrate", uri=f"tcp:127.0.0.1:{port - 1}")
    while True:
        q = cmd(sf, "query-migrate")["return"]
        if q.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.05)
    print(f"migration {r}: {q.get('status')}, total {q.get('total-time')} ms, downtime "
          f"{q.get('downtime')} ms, setup {q.get('setup-time')} ms", flush=True)
    cmd(sf, "quit")
    src.wait()
    ok = wait_counting(tag, 6, 20)
    text = log(tag)
    if not ok or any(w in text for w in ("Oops", "panic", "BUG")):
        broken += 1
        print(f"migration {r}: the guest is broken on arrival:")
        print("\n".join(text.splitlines()[:15]))
        cmd(df, "quit")
        dst.wait()
        src, sf = boot(f"b{r}")
        continue
    src, sf = dst, df
cmd(sf, "quit")
src.wait()
shutil.rmtree(work, ignore_errors=True)
print(f"RESULT mem={mem} rounds={rounds} broken={broken}")
