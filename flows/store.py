"""The data root: immutable version folders and their manifests, verified on every read.

A stage builds its output in a local *work folder* (resumable: per-shard files written atomically survive a
crash), then publishes it under ``<root>/<stage>/<version>/`` in one step. A published version is never modified.
The data root is an fsspec URL (``GPTFORGE_DATA``, default ``./data``); on a local filesystem publishing is a
rename, elsewhere (s3://, gs://, …) the work folder lives in a local cache (``GPTFORGE_CACHE``) and is uploaded,
manifest last. Readers that need local files get a published version through ``DataRoot.local_version``, which
first checks every file against the manifest and the manifest against its own checksum (``CorruptVersionError``).
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import fsspec

from gptcore.files import atomic_write_json, sha256_file
from gptcore.names import NAME_RE, check_name

DATA_ENV = "GPTFORGE_DATA"
CACHE_ENV = "GPTFORGE_CACHE"
MANIFEST = "manifest.json"
# The version folders a data root holds, with the name errors use for one of their versions.
STAGES = {"corpus": "corpus version", "tokenizer": "tokenizer version", "tokens": "tokens version", "runs": "run",
          "eval": "eval version", "compare": "compare version"}


class StoreError(RuntimeError):
    """A data-root problem the user must resolve (bad version name, conflicting parameters, missing version)."""


class CorruptVersionError(StoreError):
    """A published version whose files or manifest no longer match its manifest's checksums."""


# The stage flow that builds each stage's versions: what a corrupt version's error tells the user to rerun.
BUILT_BY = {"corpus": "build-corpus", "tokenizer": "train-tokenizer", "tokens": "tokenize",
            "runs": "pretrain or finetune", "eval": "evaluate", "compare": "compare"}


def check_version(stage: str, version: str) -> str:
    """``version`` when ``<root>/<stage>/<version>`` is a folder of the data root: a known stage and a valid name."""
    if not isinstance(stage, str) or stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of the data root's stages {tuple(STAGES)}")
    return check_name(version, STAGES[stage])


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("gptforge")
    except PackageNotFoundError:
        pkg = "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{pkg}+g{sha}" if sha else pkg


@dataclass(frozen=True)
class DataRoot:
    """One data root: ``corpus/``, ``tokenizer/``, ``tokens/``, ``runs/``, ``eval/`` version folders."""

    url: str

    @classmethod
    def from_env(cls, url: str | None = None) -> "DataRoot":
        url = url or os.environ.get(DATA_ENV) or "./data"
        if "://" not in url:
            url = str(Path(url).expanduser().resolve())
        return cls(url.rstrip("/"))

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.core.url_to_fs(self.url)[0]

    @property
    def is_local(self) -> bool:
        return "://" not in self.url or self.url.startswith("file://")

    @property
    def local_path(self) -> Path:
        return Path(self.url.removeprefix("file://"))

    def version_url(self, stage: str, version: str) -> str:
        return f"{self.url}/{stage}/{check_version(stage, version)}"

    def asset_key(self, stage: str, version: str) -> str:
        """Prefect asset key: the version folder as a URL (``file:///…`` for local roots)."""
        url = self.version_url(stage, version)
        return Path(url).as_uri() if self.is_local else url

    def exists(self, stage: str, version: str) -> bool:
        return self.fs.exists(f"{self.version_url(stage, version)}/{MANIFEST}")

    def versions(self, stage: str) -> list[str]:
        """Published versions of a stage, oldest first (by manifest created_at, then name)."""
        base = f"{self.url}/{stage}"
        if not self.fs.exists(base):
            return []
        found = []
        for entry in self.fs.ls(base, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if NAME_RE.fullmatch(name) and self.fs.exists(f"{entry.rstrip('/')}/{MANIFEST}"):
                found.append((self.read_manifest(stage, name).get("created_at", ""), name))
        return [name for _, name in sorted(found)]

    def read_manifest(self, stage: str, version: str) -> dict:
        path = f"{self.version_url(stage, version)}/{MANIFEST}"
        try:
            with self.fs.open(path, "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            raise StoreError(f"{stage} version {version!r} not found under {self.url} (no {path}); "
                             f"published versions: {self.versions(stage) or 'none'}") from None

    def next_version(self, stage: str) -> str:
        """``v0001``, ``v0002``, … counting published and in-progress versions."""
        numbers = [int(v[1:]) for v in self.versions(stage) if re.fullmatch(r"v\d+", v)]
        numbers += [int(m.group(1)) for p in self.partial_versions(stage)
                    if (m := re.fullmatch(r"\.v(\d+)\.partial", p.name))]
        return f"v{max(numbers, default=0) + 1:04d}"

    def _cache(self) -> Path:
        """This root's folder in the local cache (object-store roots only): work folders and downloaded versions."""
        cache = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "gptforge"))
        return cache / hashlib.sha256(self.url.encode()).hexdigest()[:12]

    def _work_base(self, stage: str) -> Path:
        return self.local_path / stage if self.is_local else self._cache() / stage

    def partial_versions(self, stage: str) -> list[Path]:
        """Work folders of versions started but not published (``.<version>.partial``), by name."""
        base = self._work_base(stage)
        return sorted(base.glob(".*.partial")) if base.exists() else []

    def work_dir(self, stage: str, version: str) -> Path:
        """Local, persistent staging folder of an unfinished version (kept across crashes for resuming)."""
        return self._work_base(stage) / f".{check_version(stage, version)}.partial"

    def local_version(self, stage: str, version: str, *, checked_on_read: tuple[str, ...] = ()) -> Path:
        """A published version as a local folder, verified first: no stage reads an upstream file unchecked.

        The manifest must match its own ``checksum`` and the folder must hold exactly the files it lists, each with
        its size and sha256, else ``CorruptVersionError``. Every call hashes every file once: call it once per stage
        and pass the folder on. ``checked_on_read`` (fnmatch patterns) names large files the reader checks itself
        against a checksum file verified here (token shards against ``index.json``, checkpoints against their
        ``.sha256``), so they are not hashed twice: here only their size is checked.

        On a local root this is the version folder itself. On an object store the version is downloaded once into
        the local cache (``GPTFORGE_CACHE``), under a name that includes its manifest checksum; later calls verify
        and reuse that copy. Only the files the manifest lists are fetched.
        """
        manifest = self.verified_manifest(stage, version)
        if self.is_local:
            folder = self.local_path / stage / check_version(stage, version)
            _verify_files(folder, manifest, stage, version, checked_on_read)
            return folder
        folder = self._cache() / "versions" / stage / f"{version}-{manifest['checksum'][:16]}"
        if (folder / MANIFEST).is_file():
            try:
                _verify_files(folder, manifest, stage, version, checked_on_read)
                return folder
            except CorruptVersionError:  # the local copy was damaged, not the store: download it again
                shutil.rmtree(folder, ignore_errors=True)
        partial = folder.with_name(f".{folder.name}.download-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        names = sorted(manifest["outputs"])
        remote = self.version_url(stage, version)
        for name in names:
            (partial / name).parent.mkdir(parents=True, exist_ok=True)
        self.fs.get([f"{remote}/{name}" for name in names], [str(partial / name) for name in names])
        try:
            _verify_files(partial, manifest, stage, version, checked_on_read)
        except CorruptVersionError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        atomic_write_json(partial / MANIFEST, manifest)
        try:
            os.replace(partial, folder)
        except OSError:  # another process finished the same download first
            shutil.rmtree(partial, ignore_errors=True)
        return folder

    def verified_manifest(self, stage: str, version: str) -> dict:
        """A published version's manifest, checked against its own checksums (``CorruptVersionError`` otherwise)."""
        manifest = self.read_manifest(stage, version)
        _check_manifest(manifest, stage, version, f"{self.version_url(stage, version)}/{MANIFEST}")
        return manifest

    def read_verified(self, stage: str, version: str, name: str) -> bytes:
        """One small file of a published version, its bytes checked against the verified manifest."""
        entry, url = self._listed(stage, version, name)
        with self.fs.open(url, "rb") as fh:
            data = fh.read()
        _expect(entry, url, len(data), hashlib.sha256(data).hexdigest(), stage, version)
        return data

    def verify_file(self, stage: str, version: str, name: str) -> str:
        """The URL of one file of a published version after streaming it through sha256 against the manifest."""
        entry, url = self._listed(stage, version, name)
        digest, size = hashlib.sha256(), 0
        with self.fs.open(url, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
                size += len(chunk)
        _expect(entry, url, size, digest.hexdigest(), stage, version)
        return url

    def _listed(self, stage: str, version: str, name: str) -> tuple[dict, str]:
        entry = self.verified_manifest(stage, version)["outputs"].get(name)
        url = f"{self.version_url(stage, version)}/{name}"
        if entry is None:
            raise _corrupt(stage, version, f"{url} is not listed in its version's manifest")
        return entry, url

    def publish(self, stage: str, version: str, work: Path) -> str:
        """Make a finished work folder the immutable version folder (manifest.json must be in it)."""
        if not (work / MANIFEST).exists():
            raise StoreError(f"refusing to publish {work}: it has no {MANIFEST}")
        if self.exists(stage, version):
            raise StoreError(f"{stage} version {version!r} already exists at {self.version_url(stage, version)}; "
                             "published versions are immutable: choose a new version")
        target = self.version_url(stage, version)
        if self.is_local:
            os.replace(work, target)
            return target
        # The files the manifest lists are uploaded under their final names, the manifest last: readers only see
        # versions that have a manifest, so a killed upload leaves nothing visible. Its leftovers are removed first.
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)
        names = sorted(json.loads((work / MANIFEST).read_text())["outputs"])  # bookkeeping files stay behind
        self.fs.put([str(work / name) for name in names], [f"{target}/{name}" for name in names])
        self.fs.put_file(str(work / MANIFEST), f"{target}/{MANIFEST}")
        self.fs.invalidate_cache()
        shutil.rmtree(work)
        return target


def output_names(folder: Path) -> list[str]:
    """Relative paths of the files a manifest's ``outputs`` describes: all but the manifest and dot files."""
    return [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")]


def file_entries(folder: Path) -> dict[str, dict]:
    """Relative path → size and sha256 of every file in a folder (the manifest's ``outputs``)."""
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
            for name in output_names(folder)}


def manifest_checksum(manifest: dict) -> str:
    """One checksum that stands for a whole version: the hash of its output checksums."""
    h = hashlib.sha256()
    for name, entry in sorted(manifest.get("outputs", {}).items()):
        h.update(f"{name}\0{entry['sha256']}\n".encode())
    return h.hexdigest()


def manifest_sha256(manifest: dict) -> str:
    """The hash of the whole manifest (upstream, parameters, counts, …) except this field itself."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(json.loads(json.dumps(body, default=str)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _expect(entry: dict, url: str, size: int, sha256: str, stage: str, version: str) -> None:
    if size != entry.get("bytes"):
        raise _corrupt(stage, version, f"{url} has {size} bytes, its manifest records {entry.get('bytes')}")
    if sha256 != entry.get("sha256"):
        raise _corrupt(stage, version, f"{url} has sha256 {sha256}, its manifest records {entry.get('sha256')}")


def _corrupt(stage: str, version: str, problem: str) -> CorruptVersionError:
    return CorruptVersionError(f"{problem}: the published {stage} version {version!r} was modified or damaged after "
                               f"it was published; rebuild it as a new version (run {BUILT_BY.get(stage, stage)}) "
                               "and use that one instead")


def _check_manifest(manifest: dict, stage: str, version: str, where: str) -> None:
    """The manifest's own checksum holds, and every output it lists is a path inside the version folder."""
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict) or not isinstance(manifest.get("checksum"), str):
        raise _corrupt(stage, version, f"{where} has no 'outputs' table or no 'checksum'")
    for name in outputs:
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
            raise _corrupt(stage, version, f"{where} lists an output {name!r} outside its version folder")
    try:
        actual = manifest_checksum(manifest)
    except (KeyError, TypeError):
        raise _corrupt(stage, version, f"{where} has an output entry without a sha256") from None
    if actual != manifest["checksum"]:
        raise _corrupt(stage, version, f"{where} records checksum {manifest['checksum']} but its outputs hash to "
                                       f"{actual} (an output's sha256 was edited)")
    # Versions written before the whole-manifest hash existed have only the outputs checksum.
    if "manifest_sha256" in manifest and manifest["manifest_sha256"] != (whole := manifest_sha256(manifest)):
        raise _corrupt(stage, version, f"{where} records manifest_sha256 {manifest['manifest_sha256']} but hashes to "
                                       f"{whole} (its upstream, parameters or counts were edited)")


def _verify_files(folder: Path, manifest: dict, stage: str, version: str, checked_on_read: tuple[str, ...]) -> None:
    """Exactly the files the manifest lists, each with its size and (unless checked on read) its sha256."""
    outputs = manifest["outputs"]
    present = set(output_names(folder))
    if extra := sorted(present - set(outputs)):
        raise _corrupt(stage, version, f"{folder} holds files its manifest does not list: {extra[:5]}")
    if missing := sorted(set(outputs) - present):
        raise _corrupt(stage, version, f"{folder} lacks files its manifest lists: {missing[:5]}")
    for name, entry in sorted(outputs.items()):
        path = folder / name
        if (size := path.stat().st_size) != entry["bytes"]:
            raise _corrupt(stage, version, f"{path} has {size} bytes, its manifest records {entry['bytes']}")
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in checked_on_read):
            continue
        if (actual := sha256_file(path)) != entry["sha256"]:
            raise _corrupt(stage, version, f"{path} has sha256 {actual}, its manifest records {entry['sha256']}")

