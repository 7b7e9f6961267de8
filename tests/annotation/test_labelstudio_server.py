"""End to end against a real Label Studio server (its own environment, scripts/setup_labelstudio_env.sh;
`JOYAI_LABELSTUDIO_ENV` names it), started on 127.0.0.1 for this module: a project from our labeling config,
our tasks imported, annotations submitted by two annotators through its API, its JSON export ingested."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from helpers import sentinel_pool, shard_dir

from data_engine.annotation.__main__ import main
from data_engine.annotation.batch import read_batch_key
from data_engine.annotation.rubric import DIMENSION_NAMES

LABELSTUDIO_ENV = os.environ.get("JOYAI_LABELSTUDIO_ENV")
pytestmark = pytest.mark.skipif(not LABELSTUDIO_ENV,
                                reason="JOYAI_LABELSTUDIO_ENV is not set (make test builds the Label Studio env)")
TOKEN = "0123456789abcdef0123456789abcdef01234567"
STARTUP_TIMEOUT_S = 600  # the first start migrates a fresh SQLite database


@pytest.fixture(scope="module")
def labelstudio(tmp_path_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_dir = tmp_path_factory.mktemp("labelstudio")
    env = os.environ | {"LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
                        "FRONTEND_SENTRY_DSN": "", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true"}
    log = (data_dir / "server.log").open("w")
    server = subprocess.Popen(
        [f"{LABELSTUDIO_ENV}/bin/label-studio", "start", "--no-browser", "--data-dir", str(data_dir / "data"),
         "--internal-host", "127.0.0.1", "--host", f"http://127.0.0.1:{port}", "--port", str(port),
         "--username", "admin@example.com", "--password", "not-a-secret-1", "--user-token", TOKEN,
         "--enable-legacy-api-token"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {TOKEN}"},
                          timeout=120)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert server.poll() is None, (data_dir / "server.log").read_text()[-2000:]
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Label Studio did not start in time"
            time.sleep(2)
        yield client
    finally:
        client.close()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _ok(response: httpx.Response) -> dict | list:
    assert response.status_code < 300, f"{response.request.url}: {response.status_code} {response.text[:500]}"
    return response.json()


def test_project_tasks_annotations_export_and_ingest(labelstudio, tmp_path):
    shards = shard_dir(tmp_path / "shards", rows=30)
    pool = sentinel_pool(tmp_path / "pool.parquet", 4)
    batch = tmp_path / "batches" / "b1"
    assert main(["export", str(shards), "--sentinels", str(pool), "--out", str(batch), "--batch-id", "b1",
                 "--size", "20", "--sentinel-fraction", "0.1"]) == 0
    project = _ok(labelstudio.post("/api/projects", json={"title": "joyai b1",
                                                         "label_config": (batch / "label_config.xml").read_text()}))
    _ok(labelstudio.post(f"/api/projects/{project['id']}/import", json=json.loads((batch / "tasks.json").read_text())))
    users = {email: _ok(labelstudio.post("/api/users/", json={"email": email, "username": email.split("@")[0]}))["id"]
             for email in ("ann1@example.com", "ann2@example.com")}
    tasks = _ok(labelstudio.get("/api/tasks", params={"project": project["id"], "page_size": 100, "fields": "all"}))["tasks"]
    assert len(tasks) == 20
    key = read_batch_key(batch)
    submitted = {}
    for number, task in enumerate(tasks):
        entry = key[task["data"]["task_key"]]
        known = tuple(entry[d] for d in DIMENSION_NAMES)
        plans = [("ann1@example.com", known if entry["kind"] == "sentinel" else (5, 4, 0))]
        if number < 10:  # overlap: the second annotator scores half the tasks, sentinels always wrong
            plans.append(("ann2@example.com", (3, 3, 3) if entry["kind"] == "item" else (4, 4, 4)))
        for email, scores in plans:
            result = [{"from_name": name, "to_name": "image", "type": "choices", "value": {"choices": [str(score)]}}
                      for name, score in zip(DIMENSION_NAMES, scores)]
            _ok(labelstudio.post(f"/api/tasks/{task['id']}/annotations",
                                 json={"result": result, "lead_time": 2.5 + number, "completed_by": users[email]}))
            submitted[task["data"]["task_key"], email] = scores
    export = labelstudio.get(f"/api/projects/{project['id']}/export", params={"exportType": "JSON"})
    (tmp_path / "export.json").write_bytes(export.content)
    (tmp_path / "users.json").write_text(json.dumps(_ok(labelstudio.get("/api/users/"))))
    assert main(["import", str(batch), str(tmp_path / "export.json"), "--users", str(tmp_path / "users.json")]) == 0

    rows = pq.read_table(batch / "annotations.parquet").to_pylist()
    assert len(rows) == len(submitted) == 20 + 10
    assert {(r["task_key"], r["annotator"]): tuple(r[d] for d in DIMENSION_NAMES) for r in rows} == submitted
    assert all(r["lead_time_s"] >= 2.5 and r["created_at"] for r in rows)
    from data_engine.annotation.summary import batch_summary
    summary = batch_summary(batch)
    sentinels = {r["annotator"]: r for r in summary["sentinels"]["results"]}
    assert sentinels["ann1@example.com"]["accuracy"] == 1.0 and not sentinels["ann1@example.com"]["flagged"]
    ann2_sentinels = sum(1 for (k, email) in submitted if email == "ann2@example.com" and key[k]["kind"] == "sentinel")
    if ann2_sentinels:
        assert sentinels["ann2@example.com"]["accuracy"] == 0.0 and sentinels["ann2@example.com"]["flagged"]
    assert summary["agreement"]["weighted"] is not None and summary["agreement"]["weighted"] < 0  # 3.7 vs 3.0 always
