"""Operators for the fault tests: a stage that raises on chosen rows or holds its first batch until killed, and a
reader that yields no rows for some items. Registered here (Ray workers import this module by name)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from data_engine.readers import ImageFolderConfig, ImageFolderReader, register_reader
from data_engine.registry import register_modules
from data_engine.shards import TEMP_PREFIX, shard_file_name
from data_engine.stage import StageConfig, Stage, register_stage


class FaultConfig(StageConfig):
    fail_prefix: str = ""  # rows whose upstream_id starts with this raise ValueError ("" = none)
    hold_dir: str = ""  # the first batch of the job writes hold_dir/holder (its pid) and waits until killed
    # the first batch of the job leaves a writer's temp file in this output directory and kills its own worker,
    # as a worker killed in the middle of a shard write would (claimed once through a marker file beside it)
    die_writing_into: str = ""


class FaultStage(Stage[FaultConfig]):
    """Adds `payload_bytes` (the length of image_bytes): a result that a rerun must reproduce exactly."""

    op = "test_faults"
    Config = FaultConfig

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("payload_bytes", pa.int64()),)

    def process_batch(self, batch: pa.Table) -> dict[str, list]:
        if self.config.hold_dir:
            self._hold_first_batch(Path(self.config.hold_dir))
        if self.config.die_writing_into:
            self._die_in_first_write(Path(self.config.die_writing_into))
        ids = batch.column("upstream_id").to_pylist()
        failing = [i for i in ids if self.config.fail_prefix and i.startswith(self.config.fail_prefix)]
        if failing:
            raise ValueError(f"injected failure on {failing[0]}")
        return {"payload_bytes": [len(p) for p in batch.column("image_bytes").to_pylist()]}

    @staticmethod
    def _hold_first_batch(hold_dir: Path) -> None:
        try:
            descriptor = os.open(hold_dir / "holder", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # not the first batch, or the restarted worker redoing it
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)
        time.sleep(120)  # the test kills this process long before

    @staticmethod
    def _die_in_first_write(out_dir: Path) -> None:
        try:
            os.close(os.open(out_dir.parent / f"{out_dir.name}.died", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # the restarted worker redoing the batch
        (out_dir / f"{TEMP_PREFIX}{shard_file_name(0)}.{os.getpid()}").write_bytes(b"half a shard")
        os.kill(os.getpid(), signal.SIGKILL)


register_stage(FaultStage)


@register_stage
class FaultActorStage(FaultStage):
    """The same stage as a Ray actor pool (what model stages are)."""

    op = "test_faults_actor"
    uses_model = True


class SkippingReaderConfig(ImageFolderConfig):
    kind: str = "test_skipping"  # type: ignore[assignment]


@register_reader
class SkippingReader(ImageFolderReader):
    """Image folder whose files named skip* yield no row at all (a reader may emit any number of rows)."""

    kind = "test_skipping"
    Config = SkippingReaderConfig

    def read_items(self, input_uri: str, items: Sequence[str]) -> pa.Table:
        return super().read_items(input_uri, [i for i in items if not Path(i).name.startswith("skip")])


register_modules(stages={"test_faults": __name__, "test_faults_actor": __name__},
                 readers={"test_skipping": __name__})
