"""The energy ledger of several workers on one machine: a package-wide meter (RAPL) read
by one `CpuTimeLedger` (energy/shared.py) in a manager process that the pool starts, each
worker's windows charged their share by CPU time (workers.WorkerContext.meter_choice).
"""

from __future__ import annotations

from collections.abc import Callable
from multiprocessing.managers import BaseManager
from typing import Any

from tuning_energy.config import MeterConfig
from tuning_energy.energy.shared import CpuTimeLedger


class LedgerManager(BaseManager):
    pass


_LEDGER: CpuTimeLedger | None = None


def _ledger() -> CpuTimeLedger | None:
    return _LEDGER


def init_ledger(meter_factory: Callable[..., Any], config: MeterConfig) -> None:
    global _LEDGER
    _LEDGER = CpuTimeLedger(meter_factory(config, use_gpus=False).meter)


LedgerManager.register("ledger", callable=_ledger)


def connect_ledger(address: Any, authkey: bytes | None) -> Any:
    m = LedgerManager(address=address, authkey=authkey)
    m.connect()
    return m.ledger()


