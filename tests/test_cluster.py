"""mine-logs on a real Spark standalone cluster (a master and a worker on 127.0.0.1, launched from the
installed pyspark distribution), submitted with the README's spark-submit recipe, gives exactly the output of
the local run (the session's local[2] run of the same marketplace, `mined_market`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tagmill.jobs import io, mine_logs

pytestmark = [pytest.mark.spark, pytest.mark.cluster, pytest.mark.slow]

TABLES = ("tuples", "query_forms", "labels", "images", "image_labels", "dropped_labels",
          "events_quarantine", "listings_quarantine")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_class() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home()) / "bin" / "spark-class"


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("cluster-logs")
    env = os.environ | {"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(logs),
                        "PYSPARK_PYTHON": sys.executable}
    port, master_ui, worker_ui = _free_port(), _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    procs = [subprocess.Popen(
        [str(_spark_class()), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
         "--port", str(port), "--webui-port", str(master_ui)],
        env=env, stdout=open(logs / "master.log", "w"), stderr=subprocess.STDOUT)]
    procs.append(subprocess.Popen(
        [str(_spark_class()), "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
         "--cores", "2", "--memory", "2g", "--webui-port", str(worker_ui),
         "--work-dir", str(logs / "work")],
        env=env, stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT))
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{master_ui}/json/", timeout=2).read().decode()
                if '"aliveworkers" : 1' in status or '"aliveworkers":1' in status.replace(" ", ""):
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"standalone cluster did not come up; logs in {logs}: "
                        + (logs / "master.log").read_text()[-2000:] + (logs / "worker.log").read_text()[-2000:])
        yield url, env
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_spark_submit_with_the_packed_zip_equals_the_local_run(spark, small_market, mined_market, standalone_cluster,
                                                              tmp_path):
    """The README's spark-submit recipe: tagmill packed as a zip for --py-files, the driver file from scripts/;
    the driver and the executors import tagmill from the zip (it comes first on their path). One cluster run
    covers both the recipe and the cluster: the test suite's time is bounded."""
    from pyspark.find_spark_home import _find_spark_home

    repo = Path(__file__).resolve().parents[1]
    config_file, _ = small_market
    cfg, _ = mined_market
    url, env = standalone_cluster
    package = tmp_path / "dist" / "tagmill.zip"
    subprocess.run([sys.executable, str(repo / "scripts" / "spark_package.py"), str(package)], check=True)
    out = tmp_path / "out"
    cmd = [str(Path(_find_spark_home()) / "bin" / "spark-submit"), "--master", url, "--py-files", str(package),
           str(repo / "scripts" / "spark_submit_main.py"), "-q", "mine-logs", "--config", str(config_file),
           "--master", url, "--set", f'outputs.root="{out}"']
    result = subprocess.run(cmd, env=env | {"PYSPARK_DRIVER_PYTHON": sys.executable}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"from {package}" in result.stdout  # the driver's tagmill is the zip's (its stderr goes to stdout)
    for table in TABLES:
        local = io.read_table(spark, cfg.outputs.root, mine_logs.STAGE, table, cfg.run.run_date())
        submitted = io.read_table(spark, str(out), mine_logs.STAGE, table, cfg.run.run_date())
        assert local.count() > 0 or table == "dropped_labels", table
        assert sorted(map(repr, local.collect())) == sorted(map(repr, submitted.collect())), table
