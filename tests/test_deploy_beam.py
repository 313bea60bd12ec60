"""The Beam recipes in deploy/beam/, held against Beam and the project as far as this machine allows: the
option files parse into each runner's own options with nothing unknown, the wheel they ship builds with the
batch package and the bundled model inside, the worker requirements agree with pyproject.toml, and the
Dockerfiles and README name what the build really produces. (No runner but the local ones can be reached
here; tests/test_batch.py runs those.)"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SparkRunnerOptions,
    StandardOptions,
    WorkerOptions,
)
from packaging.requirements import Requirement

from echopulse.cli import build_parser
from echopulse.cli.batch import options_from_files

REPO = Path(__file__).resolve().parents[1]
BEAM = REPO / "deploy" / "beam"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PYPROJECT["project"]["version"]
WHEEL = f"echopulse-{VERSION}-py3-none-any.whl"

RUNNERS = {
    "dataflow-cpu.options": "DataflowRunner",
    "dataflow-gpu.options": "DataflowRunner",
    "flink.options": "FlinkRunner",
    "spark.options": "SparkRunner",
    "portable-local.options": "PortableRunner",
}


def parsed(name: str) -> PipelineOptions:
    return PipelineOptions(options_from_files([str(BEAM / name)]))


def test_every_option_file_is_listed_and_names_its_runner() -> None:
    assert {p.name for p in BEAM.glob("*.options")} == set(RUNNERS)
    for name, runner in RUNNERS.items():
        assert parsed(name).view_as(StandardOptions).runner == runner


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_beam_knows_every_option_in_the_file(name: str) -> None:
    options = parsed(name)
    known = options.get_all_options()
    everything = options.get_all_options(retain_unknown_options=True)
    assert set(everything) - set(known) == set(), f"{name}: options Beam does not know"


def test_dataflow_recipes_say_where_and_what_workers() -> None:
    for name in ("dataflow-cpu.options", "dataflow-gpu.options"):
        options = parsed(name)
        cloud, workers = options.view_as(GoogleCloudOptions), options.view_as(WorkerOptions)
        assert cloud.project and cloud.region and cloud.temp_location.startswith("gs://")
        assert workers.sdk_container_image and workers.machine_type and workers.max_num_workers
        assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    gpu = parsed("dataflow-gpu.options")
    [service] = gpu.view_as(GoogleCloudOptions).dataflow_service_options
    assert re.fullmatch(r"worker_accelerator=type:nvidia-[\w-]+;count:1;install-nvidia-driver", service)
    assert "no_use_multiple_sdk_containers" in gpu.view_as(DebugOptions).experiments
    assert gpu.view_as(WorkerOptions).sdk_container_image.endswith("beam-worker-cuda:" + VERSION)
    assert parsed("dataflow-cpu.options").view_as(WorkerOptions).sdk_container_image.endswith(
        "beam-worker-cpu:" + VERSION
    )


def test_flink_and_spark_run_python_steps_in_an_external_worker_pool() -> None:
    flink, spark = parsed("flink.options"), parsed("spark.options")
    flink_options = flink.view_as(FlinkRunnerOptions)
    assert flink_options.flink_master and flink_options.flink_job_server_jar.endswith(".jar")
    assert spark.view_as(SparkRunnerOptions).spark_master_url.startswith("spark://")
    assert spark.view_as(SparkRunnerOptions).spark_job_server_jar.endswith(".jar")
    for options in (flink, spark, parsed("portable-local.options")):
        portable = options.view_as(PortableOptions)
        assert portable.environment_type == "EXTERNAL" and portable.environment_config == "localhost:50000"


def test_the_command_takes_the_option_files(tmp_path) -> None:
    args, extra = build_parser().parse_known_args(
        ["batch", "archive/", "--output", str(tmp_path), "--beam-options", str(BEAM / "flink.options"),
         "--parallelism=4"]
    )
    assert args.beam_options == [str(BEAM / "flink.options")] and extra == ["--parallelism=4"]
    (tmp_path / "bad.options").write_text("--runner=FlinkRunner\nparallelism=4\n")
    with pytest.raises(Exception, match=r"line 2 is not an --option"):
        options_from_files([str(tmp_path / "bad.options")])


def test_the_worker_requirements_agree_with_pyproject() -> None:
    listed = {}
    for line in (BEAM / "requirements-worker.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            listed[requirement.name] = requirement
    project = PYPROJECT["project"]
    for text in project["dependencies"] + project["optional-dependencies"]["batch"]:
        wanted = Requirement(text)
        assert wanted.name in listed, f"{wanted.name} missing from requirements-worker.txt"
        assert listed[wanted.name].specifier == wanted.specifier, wanted.name
    assert "gcp" in listed["apache-beam"].extras


def test_the_dockerfiles_and_readme_name_the_wheel_the_build_makes(tmp_path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(REPO)], check=True, capture_output=True, timeout=600,
    )
    [wheel] = list(tmp_path.glob("*.whl"))
    assert wheel.name == WHEEL
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"echopulse/batch/pipeline.py", "echopulse/batch/worker.py", "echopulse/cli/batch.py"} <= names
    assert any(n.startswith("echopulse/generator/weights/default/") for n in names)
    for dockerfile in ("Dockerfile.worker-cpu", "Dockerfile.worker-cuda"):
        text = (BEAM / dockerfile).read_text(encoding="utf-8")
        assert f"COPY dist/{WHEEL} /tmp/" in text and f"/tmp/{WHEEL}[batch]" in text
        assert "2.77" in text and "3.11" in text and "torch==2.13.0" in text
    assert f"dist/{WHEEL}" in (BEAM / "README.md").read_text(encoding="utf-8")
