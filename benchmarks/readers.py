"""Reader throughput: the folder, tar and Parquet-bytes readers over the same JPEG files, as a ratio to reading
the same files' bytes in a plain loop.

Each reader lists its input and reads every item in shards of `--shard-rows` in this process (no Ray), which
is what a read task does per shard. Ratios are throughput(reader) / throughput(plain reads), round by round of
the harness's interleaved repeats; the page cache is warm for every contender (each is run once before timing,
which also checks that it returns every byte), so the figures compare the readers' own cost.

The Parquet files are written as an image table should be: without dictionary encoding of the bytes column
(every image is distinct, so a dictionary only adds work; pyarrow's default made reads 2-3x slower here).
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.common import MIN_REPEATS, interleaved, rate_spread, ratio_spread, start_benchmark, write_result
from benchmarks.runtime_overhead import make_photo_set
from data_engine.io.parquet_reader import ParquetImagesConfig, ParquetImagesReader
from data_engine.io.tar_reader import TarConfig, TarReader
from data_engine.readers import ImageFolderConfig, ImageFolderReader, Reader

NAME = "readers"


def pack_inputs(photos: Path, work: Path, files_per_container: int) -> tuple[Path, Path]:
    """The photo files as WebDataset tars and as Parquet files of an `image` bytes column."""
    paths = sorted(photos.rglob("*.jpg"))
    tars, tables = work / "tars", work / "parquet"
    tars.mkdir()
    tables.mkdir()
    for index, start in enumerate(range(0, len(paths), files_per_container)):
        chunk = paths[start:start + files_per_container]
        with tarfile.open(tars / f"shard-{index:04d}.tar", "w", format=tarfile.GNU_FORMAT) as tar:
            for path in chunk:
                tar.add(path, arcname=path.relative_to(photos).as_posix())
        pq.write_table(pa.table({"image": [p.read_bytes() for p in chunk]}), tables / f"part-{index:04d}.parquet",
                       row_group_size=64, use_dictionary=False)
    return tars, tables


def plain_reads(photos: Path) -> int:
    return sum(len(path.read_bytes()) for path in sorted(photos.rglob("*.jpg")))


def reader_pass(reader: Reader, input_uri: str, shard_rows: int) -> int:
    items = reader.list_items(input_uri)
    total = 0
    for start in range(0, len(items), shard_rows):
        table = reader.read_items(input_uri, items[start:start + shard_rows])
        total += pc.sum(pc.binary_length(table.column("image_bytes"))).as_py() or 0
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--shard-rows", type=int, default=256)
    parser.add_argument("--files-per-container", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    args = parser.parse_args(argv)
    machine = start_benchmark(threads=1)

    with tempfile.TemporaryDirectory(prefix="bench-readers-") as work_dir:
        work = Path(work_dir)
        photos = work / "photos"
        make_photo_set(photos, args.images)
        tars, tables = pack_inputs(photos, work, args.files_per_container)
        total_bytes = plain_reads(photos)
        contenders: dict[str, Callable[[], int]] = {
            "plain": lambda: plain_reads(photos),
            "folder": lambda: reader_pass(ImageFolderReader(ImageFolderConfig()), str(photos), args.shard_rows),
            "tar": lambda: reader_pass(TarReader(TarConfig()), str(tars), args.shard_rows),
            "parquet": lambda: reader_pass(ParquetImagesReader(ParquetImagesConfig(bytes_column="image")),
                                           str(tables), args.shard_rows),
        }
        for name, run in contenders.items():  # the warm-up, and a check that no reader loses or adds bytes
            if run() != total_bytes:
                raise RuntimeError(f"reader {name} returned a different number of image bytes")
        seconds = interleaved(contenders, repeats=args.repeats, warmup=0)

    metrics = {f"{name}_ratio": ratio_spread(seconds["plain"], seconds[name]) for name in ("folder", "tar", "parquet")}
    metrics["plain_mb_per_s"] = rate_spread(total_bytes / 1e6, seconds["plain"], 1)
    write_result(NAME, metrics, machine=machine,
                 baseline="plain loop reading the same JPEG files' bytes (throughput ratio, higher is faster)",
                 command=f"python -m benchmarks.readers --images {args.images} --shard-rows {args.shard_rows} "
                         f"--files-per-container {args.files_per_container} --repeats {args.repeats}",
                 notes={"images": args.images, "bytes": total_bytes, "seconds": seconds,
                        "images_per_s": {name: rate_spread(args.images, values, 1)
                                         for name, values in seconds.items()}})


if __name__ == "__main__":
    main()
