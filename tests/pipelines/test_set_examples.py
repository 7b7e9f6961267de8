"""Every `--set` example a user can copy, from the README and from each job file's comments, validates against
the shipped job it is written for (as `python -m pipelines validate` would)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.jobfile import JOBS_DIR, load_job, load_job_data

REPO_ROOT = Path(__file__).resolve().parents[2]
SET_EXAMPLE = re.compile(r"""--set\s+(?:'([^']*)'|"([^"]*)"|([^\s`'"]+))""")
OUT_OPTION = re.compile(r"--out\s+([^\s`]+)")
JOB_FILE = re.compile(r"\b([a-z0-9_]+\.yaml)\b")
# The README's descriptions of the syntax, not examples.
PLACEHOLDERS = {"key=value", "stages.STAGE.config.FIELD=VALUE"}


def logical_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(first line number, text) with shell continuations (a trailing backslash) joined."""
    joined, start, parts = [], None, []
    for number, line in enumerate(lines, 1):
        start = start or number
        parts.append(line.rstrip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            joined.append((start, " ".join(parts)))
            start, parts = None, []
    return joined


def alternative_values(value: str) -> list[str]:
    """`key=a|b|c` (escaped `\\|` in Markdown tables) -> one override per alternative."""
    key, _, written = value.partition("=")
    if written.startswith(("{", "[", "'", '"')):
        return [value]
    return [f"{key}={alternative}" for alternative in written.replace("\\|", "|").split("|")]


def jobs_with_stage(name: str) -> list[str]:
    return [path.name for path in sorted(JOBS_DIR.glob("*.yaml"))
            if any((stage.get("name") or stage.get("op")) == name for stage in load_job_data(path)["stages"])]


def examples_in(source: Path, lines: list[str], own_job: str | None) -> list[tuple[str, str, list[str]]]:
    """(where, job file, overrides) for every example; a line that names no job is checked against each job
    with the stage it sets."""
    found = []
    for number, text in logical_lines(lines):
        values = [next(group for group in match.groups() if group is not None) for match in SET_EXAMPLE.finditer(text)]
        values = [value for value in values if value.rstrip("]") not in PLACEHOLDERS]
        if not values:
            continue
        out = [f"output={match}" for match in OUT_OPTION.findall(text)]
        jobs = [name for name in JOB_FILE.findall(text) if (JOBS_DIR / name).is_file()] or ([own_job] if own_job else [])
        if not jobs:
            stages = {value.split(".")[1] for value in values if value.startswith("stages.")}
            jobs = sorted({job for stage in stages for job in jobs_with_stage(stage)})
        assert jobs, f"{source.name}:{number}: an example whose job cannot be told: {text.strip()}"
        # Alternatives written a|b|c (escaped in Markdown tables) are one example each.
        alternatives = [alternative_values(value) for value in values]
        for job in jobs:
            for index in range(max(len(options) for options in alternatives)):
                chosen = [options[min(index, len(options) - 1)] for options in alternatives]
                found.append((f"{source.name}:{number}", job, chosen + out))
    return found


def all_examples() -> list[tuple[str, str, list[str]]]:
    readme = REPO_ROOT / "README.md"
    examples = examples_in(readme, readme.read_text().splitlines(), None)
    for job_file in sorted(JOBS_DIR.glob("*.yaml")):
        comments = [line.strip().removeprefix("#") if line.strip().startswith("#") else ""
                    for line in job_file.read_text().splitlines()]
        examples += examples_in(job_file, comments, job_file.name)
    return examples


EXAMPLES = all_examples()


@pytest.mark.parametrize(("where", "job", "overrides"), EXAMPLES, ids=[f"{w}-{j}" for w, j, _ in EXAMPLES])
def test_example_validates_against_the_shipped_job(where: str, job: str, overrides: list[str]) -> None:
    config = load_job(JOBS_DIR / job, overrides)
    for override in overrides:  # the override reached the config (not a key nobody reads)
        key, _, _ = override.partition("=")
        assert key.split(".")[0] in {"stages", "input", "output", "preset", "reader", "storage", "ray"}, where
    assert config.name


def test_the_examples_include_the_ones_the_issue_names() -> None:
    """The stage examples users asked for are there, on the job that has the stage."""
    named = {(job, override) for _, job, overrides in EXAMPLES for override in overrides}
    assert ("curate_images.yaml", "stages.aesthetic.config.model_path=DIR") in named
    assert ("caption.yaml", "stages.ocr_text.config.engine=tesseract") in named
    assert {job for job, _ in named} >= {"curate_images.yaml", "caption.yaml", "rewrite.yaml", "demo.yaml",
                                         "multiview.yaml"}
