"""Job configs: typed validation with one-line errors naming the field; overrides; hashing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from data_engine.config_files import apply_override, parse_override
from data_engine.job import JobConfigError
from data_engine.readers import READERS
from pipelines.jobfile import JOBS_DIR, load_job

REPO = Path(__file__).resolve().parents[2]


def write_job(tmp_path, **changes):
    data = yaml.safe_load((JOBS_DIR / "demo.yaml").read_text())
    for key, value in changes.items():
        apply_override(data, key.split("."), value)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("job_file", sorted(JOBS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_jobs_validate(job_file):
    job = load_job(job_file)
    assert job.name and job.reader.kind in READERS


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"stages.0.config.min_side": "big"}, "stages.0: decode_image.config.min_side: Input should be a valid integer"),
        ({"stages.0.config.animated": "loop"}, "decode_image.config.animated: Input should be 'reject' or 'first_frame'"),
        ({"stages.0.op": "decode_imag"}, "stages.0.op: unknown op 'decode_imag'; allowed: "),
        ({"stages.0.resources.batch_size": 0}, "decode_image.resources.batch_size: Input should be greater than 0"),
        ({"schema": "images"}, "schema: unknown schema 'images'; allowed:"),
        ({"schema": "caption"}, "schema: reader image_folder emits image_sample rows, not caption"),
        ({"reader.kind": "tarball"}, "reader: unknown reader kind 'tarball'; allowed: "),
        ({"reader.shard_rows": 0}, "reader: image_folder.shard_rows: Input should be greater than 0"),
        ({"stages.0.config.min_sid": 3}, "decode_image.config.min_sid: Extra inputs are not permitted"),
    ],
)
def test_bad_field_gives_one_line_naming_it(tmp_path, change, expected):
    with pytest.raises(JobConfigError) as info:
        load_job(write_job(tmp_path, **change))
    message = str(info.value)
    assert "\n" not in message
    assert expected in message


def test_validate_cli_exit_code_and_single_line(tmp_path):
    bad = write_job(tmp_path, **{"stages.0.config.min_side": -1})
    result = subprocess.run([sys.executable, "-m", "pipelines", "validate", str(bad)], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "stages.0: decode_image.config.min_side: Input should be greater than or equal to 0" in result.stderr
    good = subprocess.run([sys.executable, "-m", "pipelines", "validate", str(JOBS_DIR / "demo.yaml"),
                           "--set", "stages.decode_image.config.min_side=256"], cwd=REPO, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "read -> decode_image" in good.stdout


def test_missing_job_file_is_one_line(tmp_path):
    with pytest.raises(JobConfigError, match="job file does not exist"):
        load_job(tmp_path / "nope.yaml")


def test_overrides_by_index_and_stage_name(tmp_path):
    job = load_job(JOBS_DIR / "demo.yaml", ["input=/data/x", "stages.decode_image.config.min_side=512",
                                            "stages.0.resources.batch_size=4", "reader.shard_rows=7"])
    assert job.input == "/data/x"
    assert job.stages[0].config["min_side"] == 512
    assert job.stages[0].stage_resources().batch_size == 4
    assert job.reader.shard_rows == 7


def test_override_errors_name_the_key():
    with pytest.raises(JobConfigError, match="no item named 'caption'"):
        load_job(JOBS_DIR / "demo.yaml", ["stages.caption.config.x=1"])
    with pytest.raises(JobConfigError, match="expected key=value"):
        parse_override("justakey")


def test_config_hash_ignores_execution_settings_only():
    base = load_job(JOBS_DIR / "demo.yaml")
    faster = load_job(JOBS_DIR / "demo.yaml", ["stages.0.resources.batch_size=2", "ray.num_cpus=1", "output=/x"])
    stricter = load_job(JOBS_DIR / "demo.yaml", ["stages.0.config.min_side=200"])
    assert base.config_hash() == faster.config_hash()
    assert base.config_hash() != stricter.config_hash()


def test_job_preset_fills_every_stage_that_takes_one_and_explicit_values_win():
    job = load_job(JOBS_DIR / "curate_images.yaml", ["preset=stage3_1024p"])
    configs = {spec.name: spec.config for spec in job.stages}
    assert configs["decode_image"]["min_side"] == 512
    assert configs["iqa"]["preset"] == "stage3_1024p" and configs["iqa"]["niqe_max"] == 5.5
    assert configs["ocr"]["dense_text_min_side"] == 768
    explicit = load_job(JOBS_DIR / "curate_images.yaml", ["preset=stage1_208p", "stages.decode_image.config.min_side=300"])
    assert explicit.stages[0].config["min_side"] == 300
    assert load_job(JOBS_DIR / "curate_images.yaml", ["preset=stage1_208p"]).config_hash() != job.config_hash()
