"""The installed wheel works on its own: `init` then `subscribers import` in a new virtualenv."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_in_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("weekly_mailer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "weekly_mailer/_migrations/env.py" in names
    assert "weekly_mailer/_migrations/alembic.ini" in names
    assert any(n.startswith("weekly_mailer/_migrations/versions/0001") for n in names)
    assert "weekly_mailer/py.typed" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    # Dependencies come from this test run's environment (no network needed); the project
    # itself only from the wheel: .pth files of the outer site-packages (our editable install)
    # are not processed for a directory added this way.
    purelib = Path(
        sysconfig.get_paths(vars={"base": str(env_dir), "platbase": str(env_dir)})["purelib"]
    )
    outer = [p for p in site.getsitepackages() if Path(p).exists()]
    (purelib / "outer-deps.pth").write_text("\n".join(outer) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--quiet",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "people.csv").write_text(
        "email,name\nann@example.org,Ann\nbad@@example.org,X\nbo@example.org,Bo\n"
    )
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("WEEKLY_MAILER_")}
    where = subprocess.run(
        [str(py), "-c", "import weekly_mailer, sys; print(weekly_mailer.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        env=clean_env,
        check=True,
    )
    assert str(env_dir) in where.stdout, "the wheel, not the checkout, must be imported"
    script = env_dir / "bin" / "weekly-mailer"
    init = subprocess.run(
        [str(script), "init"], cwd=work, capture_output=True, text=True, env=clean_env
    )
    assert init.returncode == 0, init.stderr
    result = subprocess.run(
        [str(script), "subscribers", "import", "people.csv", "--confirmed"],
        cwd=work,
        capture_output=True,
        text=True,
        env=clean_env,
    )
    assert result.returncode == 1  # one bad row
    assert "people.csv:3:" in result.stderr
    assert "2 added" in result.stdout
    count = subprocess.run(
        [str(py), "-m", "weekly_mailer", "subscribers", "count"],
        cwd=work,
        capture_output=True,
        text=True,
        env=clean_env,
    )
    assert count.stdout == "2\n", count.stderr
    # The README's first command, from the wheel: templates and the sample article are inside.
    demo = subprocess.run(
        [str(script), "demo"], cwd=work, capture_output=True, text=True, env=clean_env, timeout=300
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert len(list((work / "demo" / "outbox").glob("*.eml"))) >= 100
    assert (work / "demo" / "preview.html").read_text(encoding="utf-8").startswith("<!DOCTYPE")
    # The README's bare commands, after its install line and the `source` it then gives.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "source .venv/bin/activate" in readme
    bare = subprocess.run(
        ["bash", "-c", f"source {env_dir}/bin/activate && weekly-mailer subscribers count"],
        cwd=work,
        capture_output=True,
        text=True,
        env={**clean_env, "PATH": "/usr/bin:/bin"},
    )
    assert bare.stdout == "2\n", bare.stderr
