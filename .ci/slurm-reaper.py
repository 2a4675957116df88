"""Run commands as children of a subreaper and reap every orphan that lands on us.

Usage: slurm-reaper.py LOG CMD ARGS... [-- CMD ARGS...]...

In a sandbox whose PID 1 does not reap orphans, finished Slurm job steps would stay
zombies; as PR_SET_CHILD_SUBREAPER the orphans of slurmd come to this process instead,
which waits on them. Exits when every command it started has exited.
"""
import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

log = open(sys.argv[1], "ab")
cmds, cur = [], []
for a in sys.argv[2:]:
    if a == "--":
        cmds.append(cur)
        cur = []
    else:
        cur.append(a)
if cur:
    cmds.append(cur)
mine = {subprocess.Popen(c, stdout=log, stderr=log).pid for c in cmds}
while mine:
    try:
        pid, _ = os.wait()
    except ChildProcessError:
        break
    mine.discard(pid)
