"""How many torch threads the worker computes with: the cores other processes leave free.

Measured (docs/method.md §1.2): torch's CPU build runs its intra-op pool on GNU
OpenMP, whose threads spin while they wait for each other. Beside other busy processes a thread
that has lost its core makes the others spin until it is scheduled again, so two threads on a
busy 2-core machine trained the SAE 5-10x slower than one. So the worker

- asks OpenMP to let waiting threads sleep (``quiet_openmp``, before torch loads libgomp: it
  reads its environment once), and
- picks its thread count from the cores the *other* processes left idle since the last look
  (``ThreadGovernor``, called once per epoch), never fewer than one, never more than the cores
  it may run on.

Bit-for-bit reproducibility needs a fixed count (``RECSAE_THREADS=N`` or ``--set
recommender.threads=N``): one thread and two train the same SAE bit for bit, but SASRec's float
sums differ in the last bits (1e-5 relative after an epoch; tests/worker/test_threads.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

# GNU OpenMP's waiting threads sleep at once instead of spinning (its default spins 300,000
# iterations, ACTIVE forever). Beside other busy processes, SAE steps on two threads (load ~10,
# alternating runs): default 5-7k vectors/s, GOMP_SPINCOUNT=10000 23-31k, PASSIVE 30-63k, one
# thread 43-47k. Spinning 30,000 iterations instead made an idle SASRec epoch 2-15% faster but
# the SAE beside two busy loops 2.86x its idle time instead of 2.26x, over the 2.5x
# (docs/method.md §1.2).
WAIT_POLICY = "PASSIVE"
PROC_STAT = Path("/proc/stat")
MIN_INTERVAL_S = 0.5  # shorter windows say little about the load


def quiet_openmp() -> None:
    """Set OpenMP's wait policy unless the user chose one. Call before ``import torch``: libgomp
    reads it when it loads, later changes do nothing."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY


def usable_set() -> set[int]:
    """The cores this process may run on (its affinity mask; cgroup quotas are not read)."""
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def usable_cores() -> int:
    return len(usable_set())


def choose_threads(usable: int, others_busy_cores: float) -> int:
    """Threads for the cores others leave: ``usable - others_busy`` rounded, clipped to
    ``1 .. usable``. Two busy loops on two cores leave none: one thread (its fair share)."""
    if usable < 1:
        raise ValueError(f"usable cores must be >= 1, got {usable}")
    free = usable - max(0.0, others_busy_cores)
    return max(1, min(usable, int(free + 0.5)))


def read_cpu_seconds(cpus: set[int] | None = None, stat: Path = PROC_STAT) -> float | None:
    """Busy CPU seconds since boot of the cores ``cpus`` (default: this process's affinity), from
    /proc/stat's ``cpuN`` lines; None where there is no /proc (not Linux)."""
    cpus = usable_set() if cpus is None else cpus
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds this process has used (all its threads)."""
    t = os.times()
    return t.user + t.system


@dataclass
class ThreadGovernor:
    """Re-picks the thread count from the load since its last look.

    ``fixed`` > 0 pins the count (``--set ...threads=N``, ``RECSAE_THREADS``). Otherwise
    ``update`` compares /proc/stat's busy seconds with this process's own CPU seconds over the
    window since the previous call: the rest is what other processes used, in cores.
    ``reserve`` cores of the free ones are left to this process's own helper thread (SASRec's
    batch producer, worker/prefetch.py); the count never drops below one.
    """

    fixed: int = 0
    usable: int = field(default_factory=usable_cores)
    reserve: int = 0
    threads: int = 0
    history: list[int] = field(default_factory=list)  # the count applied at each start/update
    _last: tuple[float, float, float] | None = None  # (machine busy s, own s, wall s)

    def __post_init__(self) -> None:
        if self.fixed < 0:
            raise ValueError(f"threads must be >= 0 (0: automatic), got {self.fixed}")
        if self.reserve < 0:
            raise ValueError(f"reserve must be >= 0, got {self.reserve}")
        self.threads = self.fixed or max(1, self.usable - self.reserve)

    def start(self, sample_s: float = 0.1) -> int:
        """First choice: the load over a short sample (the caller's own CPU use is excluded)."""
        if not self.fixed:
            self._look()
            time.sleep(sample_s)
            self._look(force=True)
        return self.apply()

    def update(self) -> int:
        """Re-pick from the load since the last look (no sleep); returns the thread count."""
        if not self.fixed:
            self._look()
        return self.apply()

    def apply(self) -> int:
        import torch  # the caller has loaded it; imported here so this module stays light

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        self.history.append(self.threads)
        return self.threads

    def _look(self, force: bool = False) -> None:
        busy = read_cpu_seconds()
        if busy is None:
            return
        now = (busy, own_cpu_seconds(), time.monotonic())
        last = self._last
        if last is not None and (force or now[2] - last[2] >= MIN_INTERVAL_S):
            wall = now[2] - last[2]
            if wall > 0:
                others = ((now[0] - last[0]) - (now[1] - last[1])) / wall
                self.threads = max(1, choose_threads(self.usable, others) - self.reserve)
        if last is None or force or now[2] - last[2] >= MIN_INTERVAL_S:
            self._last = now


def governor(threads: int = 0, reserve: int = 0) -> ThreadGovernor:
    """The governor for a config's ``threads``, started (its count applied): N > 0 fixes N; 0
    defers to ``RECSAE_THREADS``, and when that is 0 too, the count follows the free cores, less
    ``reserve`` for the process's own helper thread."""
    from core.settings import get_settings

    gov = ThreadGovernor(fixed=threads or get_settings().threads, reserve=reserve)
    gov.start()
    return gov
