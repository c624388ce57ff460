"""Corpus-size work on Ray: clips (or recordings, for timelines) flow through Ray Data to actors that
each hold one model.

Without an address Ray starts on this machine (about 2 s); with one (``ray://host:10001`` or
``auto``) it joins that cluster, whose nodes must see the same audio paths and model folder. Each
actor reads clips exactly as the single-process path does (the same :class:`VoiceReader`, the same
precision, one thread per worker), so the embeddings are the same bit for bit. Results
stream back to the driver in whatever order they finish; the caller keys them by clip.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from speakerid.base.errors import SpeakerIDError, UsageError
from speakerid.flows.enrollment import Limits, read_clip
from speakerid.voice.engine import Embedder
from speakerid.voice.reader import VoiceReader

BATCH = 4  # clips per call: small, so work spreads evenly and a slow clip does not hold many back


@dataclass(frozen=True)
class Work:
    """What every actor needs to read clips the way the driver would."""

    model: str
    device: str
    precision: str
    max_seconds: float
    enrollment: Limits | None  # None: evaluation (measure speech, refuse nothing)

    @classmethod
    def like(cls, embedder: Embedder, device: str, max_seconds: float, enrollment: Limits | None = None) -> Work:
        """The work of actors that read clips as ``embedder`` (this process's) does."""
        return cls(str(embedder.model.path), device, embedder.precision, max_seconds, enrollment)


class ClipReader:
    """A Ray Data actor: one model, clips in, vectors (or the reason a clip was refused) out."""

    def __init__(self, work: Work):
        from speakerid.voice.embedder import load_embedder

        self.work = work
        # one core per worker: Ray gives each actor one CPU
        self.reader = VoiceReader(
            load_embedder(work.model, device=work.device, precision=work.precision, threads=1),
            max_seconds=work.max_seconds,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {k: [] for k in ("key", "vector", "error", "seconds", "speech_seconds", "sha256")}
        for key, path in zip(batch["key"], batch["path"]):
            vector, error, seconds, speech_seconds, sha = None, "", 0.0, 0.0, ""
            try:
                if self.work.enrollment is None:
                    audio, speech = self.reader.decode(str(path), min_speech=None)
                else:
                    read = read_clip(self.reader, self.work.enrollment, str(path))
                    if isinstance(read[0], str):
                        raise _Refused(read[1])
                    audio, speech, sha = read
                vector = self.reader.embed(speech)
                seconds, speech_seconds = audio.seconds, speech.seconds
            except (SpeakerIDError, _Refused) as exc:
                error = getattr(exc, "reason", None) or str(exc)
            out["key"].append(key)
            out["vector"].append(np.zeros(self.reader.embedder.dimension, np.float32) if vector is None else vector)
            out["error"].append(error)
            out["seconds"].append(seconds)
            out["speech_seconds"].append(speech_seconds)
            out["sha256"].append(sha)
        return out


class _Refused(Exception):
    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def start(address: str | None) -> None:
    """Join the cluster at ``address``, or start Ray here (``None``)."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs the ray extra: pip install 'speakerid-voiceprint[ray]'") from None
    if not ray.is_initialized():
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, logging_level="ERROR")


def read_on_ray(
    items: Sequence[tuple[str, str]], work: Work, *, workers: int, address: str | None = None, progress: bool = True
) -> Iterator[dict]:
    """Read ``(key, path)`` items on ``workers`` Ray actors; yields one dict per clip:
    ``key``, ``vector`` (float32), ``error`` ("" when read), ``seconds``, ``speech_seconds``, ``sha256``."""
    import ray

    from speakerid.base.progress import progress as progress_bar

    start(address)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours below counts clips; Ray's would print per operator
    dataset = ray.data.from_items([{"key": k, "path": p} for k, p in items], override_num_blocks=max(workers * 4, 1))
    results = dataset.map_batches(
        ClipReader,
        fn_constructor_kwargs={"work": work},
        batch_size=BATCH,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
        batch_format="numpy",
    )
    for name in ("ray", "ray.data"):  # Ray Data configures its loggers when first used; quiet them after
        logging.getLogger(name).setLevel(logging.ERROR)
    with progress_bar(len(items), unit="clip", desc=f"embedding on Ray ({workers} workers)", enabled=progress) as bar:
        for row in results.iter_rows():
            bar.update(1)
            yield {**row, "vector": np.asarray(row["vector"], dtype=np.float32)}


class WindowReader:
    """A Ray Data actor for timelines: recordings in, their speech and embedded windows out (the
    model's part of a timeline; the driver labels them against the store's profiles)."""

    def __init__(self, work: Work):
        from speakerid.voice.embedder import load_embedder

        self.embedder = load_embedder(work.model, device=work.device, precision=work.precision, threads=1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        import pickle

        from speakerid.flows.timeline import read_windows

        out: dict[str, list] = {"key": [], "windows": [], "error": []}
        for key, path in zip(batch["key"], batch["path"]):
            windows, error = b"", ""
            try:
                windows = pickle.dumps(read_windows(self.embedder.embed_equal, str(path)))
            except SpeakerIDError as exc:
                error = str(exc)
            out["key"].append(key)
            out["windows"].append(windows)
            out["error"].append(error)
        return out


def windows_on_ray(
    items: Sequence[tuple[str, str]], work: Work, *, workers: int, address: str | None = None
) -> Iterator[dict]:
    """Read ``(key, path)`` recordings on ``workers`` Ray actors, one recording per call; yields
    ``key``, ``windows`` (:class:`~speakerid.flows.timeline.Windows`, or ``None``) and ``error``."""
    import pickle

    import ray

    start(address)
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = ray.data.from_items([{"key": k, "path": p} for k, p in items], override_num_blocks=max(len(items), 1))
    results = dataset.map_batches(
        WindowReader,
        fn_constructor_kwargs={"work": work},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
        batch_format="numpy",
    )
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for row in results.iter_rows():
        data = row["windows"]
        yield {"key": row["key"], "windows": pickle.loads(data) if data else None, "error": row["error"]}
