"""The public API as a user meets it: the README's Python examples run as written, and `import echopulse`
stays cheap (no torch until a generator is asked for)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_examples() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert len(readme_examples()) >= 2


@pytest.mark.parametrize("index", range(len(readme_examples())))
def test_the_readmes_python_example_runs_as_written(index: int, tmp_path: Path, shared_data: Path) -> None:
    """In a folder holding the watch export the examples name, as a user who downloaded it would."""
    (tmp_path / "ecg_2021-12-17.csv").symlink_to(shared_data / "apple_watch" / "ecg_2021-12-17.csv")
    script = tmp_path / "example.py"
    script.write_text(readme_examples()[index], encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, check=False, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    if "generator.generate" in readme_examples()[index]:
        lines = result.stdout.splitlines()
        assert lines[0].startswith("0 ") and lines[0].endswith("no RR interval (no accepted beat before it)")
        assert lines[1].endswith(" None")  # the second beat gets a clip
        assert lines[-1].startswith("(11, 64, 64)") and lines[-1].endswith("True")


def test_importing_echopulse_imports_no_torch_until_a_generator_is_asked_for() -> None:
    code = (
        "import sys, echopulse\n"
        "from echopulse import read_record, preprocess_record, StreamingPreprocessor, EchoClip\n"
        "assert 'torch' not in sys.modules, 'torch imported too early'\n"
        "from echopulse import EchoGenerator\n"
        "assert 'torch' in sys.modules\n"
        "assert set(echopulse.__all__) <= set(dir(echopulse))\n"
        "for name in echopulse.__all__: getattr(echopulse, name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
