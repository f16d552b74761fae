"""Prepare a dataset on disk once; serve its cases from memory-mappable arrays.

Datasets read from files (NIfTI volumes, 2D images) are decoded, checked and
preprocessed once into a cache; training and evaluation then read ``.npy`` arrays with
``np.load(mmap_mode=...)`` and never decode a NIfTI or JPEG again.

Cache layout (``$KDBENCH_CACHE``, else ``~/.cache/kdbench``; a dataset's ``cache_dir``
option overrides both)::

    <cache>/<dataset>/<key>/
        manifest.json            parameters, and per case: its folder, source signatures, spacing
        cases/<case>-<token>/    image.npy (S, C, H, W) · label.npy (S, H, W) uint8 ·
                                 eval_label.npy (S, H0, W0) uint8 · present.npy (S,) · meta.json
        .lock

``key`` hashes the dataset name, its resolved root, ``image_size`` and every option
that changes the arrays (window, slice axis, crop, ...), so changing one prepares a new
copy and switching back finds the old one.  Within a key, each case records the
signature of every file it was read from: size, modification time (ns) and a BLAKE2b
digest of the file's first and last MiB.  When size and mtime are unchanged the file is
taken as unchanged without being read; otherwise the digest decides.  A changed,
added or removed source file re-prepares (or drops) only its case.

Writes are atomic: a case is written into a temporary folder, renamed into place, and
only then entered into the manifest (itself replaced atomically).  A failure —
a corrupt file, a full disk, a killed process — loses at most the case in flight;
every case already prepared stays valid.  Cases that fail are reported together, as
one error line, after all the others are prepared; a full disk (``no space left on
<cache folder> while preparing <case>``) stops preparation at once.  A second
``prepare`` of an unchanged dataset reads no data and writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import secrets
import shutil
import time
import warnings
import zlib
from abc import abstractmethod
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from kdbench.datasets.base import Case, SegDataset
from kdbench.datasets.options import DatasetOptions, parse_options
from kdbench.errors import ConfigError, DatasetError, KdbenchError, KdbenchNote, MissingRootError, full_disk_reason

#: bump when the layout of the cache changes
MANIFEST_SECONDS = 2.0
"""Seconds between two writes of the manifest while cases are prepared (and once at the end):
written after every case, it made preparation quadratic in the number of cases (998 Kvasir-SEG
images: 8 images/s).  A killed preparation loses at most these seconds of work; the arrays no
manifest names are removed by the next one."""
FORMAT_VERSION = 1
#: bytes hashed at each end of a source file
HASH_BYTES = 1 << 20
SIGNATURE = "size + mtime_ns; blake2b-128 of the first and last MiB when either changed"


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``override``, else ``$KDBENCH_CACHE``, else ``~/.cache/kdbench``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("KDBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "kdbench"


def one_line(exc: BaseException) -> str:
    """An exception as one line: ``Type: message`` with newlines folded."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def fast_hash(path: Path, size: int) -> str:
    """BLAKE2b-128 of the size and the first and last MiB of ``path``."""
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as fh:
        digest.update(fh.read(HASH_BYTES))
        if size > 2 * HASH_BYTES:
            fh.seek(size - HASH_BYTES)
        digest.update(fh.read(HASH_BYTES))
    return digest.hexdigest()


def file_signature(path: Path, recorded: dict | None = None) -> dict:
    """``{size, mtime_ns, blake2b}`` of ``path``; reuses ``recorded`` if size and mtime match."""
    st = path.stat()
    if recorded and recorded.get("size") == st.st_size and recorded.get("mtime_ns") == st.st_mtime_ns:
        return recorded
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "blake2b": fast_hash(path, st.st_size)}


def safe_name(case_id: str) -> str:
    """``case_id`` as a file-name fragment (letters, digits, ``._-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id) or "case"


@dataclass(frozen=True)
class Source:
    """Where one case comes from: its image file(s), its label file, its official part."""

    case_id: str
    images: tuple[Path, ...]
    label: Path
    part: str = "train"
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        return (*self.images, self.label)

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.extra).get(key, default)


@dataclass
class Discovery:
    """The cases found under a root, and the problems found while looking (one line each)."""

    sources: list[Source] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seen: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class CaseArrays:
    """A preprocessed case, ready to be written to the cache."""

    image: np.ndarray  # (S, C, H, W) float32, or uint8 in [0, 255] for 8-bit images
    label: np.ndarray  # (S, H, W) uint8
    spacing: tuple[float, float, float]
    eval_label: np.ndarray | None = None  # (S, H0, W0) uint8
    eval_spacing: tuple[float, float, float] | None = None
    meta: dict = field(default_factory=dict)


def no_foreground_problem(name: str, root: Path, flags: list[bool]) -> str | None:
    """The problem of a dataset whose every mask is empty (``flags``: per case, any foreground), or ``None``."""
    if not flags or any(flags):
        return None
    return (f"dataset {name}: all {len(flags)} masks under {root} are empty (no foreground label): nothing to "
            f"learn, and Dice is undefined (NaN); check the masks and the option mask_threshold")


def warn_if_no_foreground(name: str, root: Path, entries) -> None:
    """Warn (a :class:`KdbenchNote`) when every prepared case's mask is empty."""
    flags = [entry["foreground"] for entry in entries if "foreground" in entry]
    problem = no_foreground_problem(name, root, flags)
    if problem:
        warnings.warn(KdbenchNote(problem), stacklevel=2)


def slice_presence(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(S,)`` int64 bit masks: bit ``v`` set where slice ``s`` contains label ``v``."""
    present = np.zeros(labels.shape[0], dtype=np.int64)
    for v in range(1, num_classes):
        hit = (labels == v).reshape(labels.shape[0], -1).any(axis=1)
        present |= hit.astype(np.int64) << v
    return present


def label_mask(labels: tuple[int, ...] | list[int]) -> int:
    """The bit mask of a set of label values (see :func:`slice_presence`)."""
    mask = 0
    for v in labels:
        mask |= 1 << int(v)
    return mask


def resolve_root(root: str | os.PathLike | None, dataset: str, layout: str, download: str = "") -> Path:
    """The dataset root as an absolute path; a missing one is a one-line :class:`MissingRootError`.

    The message names the dataset, the root, the layout expected there and, where known,
    where to get the data (``download``).
    """
    expected = f"expected a folder holding {layout}" + (f"; get the data from {download}" if download else "")
    if root is None or str(root).strip() == "":
        raise MissingRootError(f"dataset {dataset} has no root ({expected})")
    path = Path(root).expanduser()
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as exc:  # e.g. a NUL in the name, a path too long
        raise MissingRootError(f"dataset {dataset}: root {str(root)!r} is not a usable path "
                               f"({one_line(exc)})") from None
    if not exists:
        raise MissingRootError(f"dataset {dataset}: root {str(path)!r} does not exist ({expected})")
    if not is_dir:
        raise MissingRootError(f"dataset {dataset}: root {str(path)!r} is a file, not a folder ({expected})")
    return path.resolve()


class CacheWriteError(DatasetError):
    """The preparation cache cannot be written (disk full, quota, read-only): preparation stops."""


def cache_write_error(exc: OSError, folder: Path, what: str) -> CacheWriteError:
    """A one-line error for an ``OSError`` raised while writing ``what`` into ``folder``."""
    if full_disk_reason(exc) is not None:
        return CacheWriteError(f"no space left on {folder} while {what}; free some space, or set "
                               f"KDBENCH_CACHE or the dataset option cache_dir to another disk")
    return CacheWriteError(f"cannot write to {folder} while {what} ({one_line(exc)})")


class PreparedDataset(SegDataset):
    """A dataset read from files under ``root`` and served from the preparation cache.

    Subclasses set ``name`` (the registry name), ``Options`` (a :class:`DatasetOptions`
    model) and ``layout`` (the expected layout, in words, for error messages), and
    implement :meth:`discover` (list the cases: cheap, no decoding), :meth:`read_case`
    (decode and check one case; raises :class:`DatasetError` naming the file) and
    :meth:`preprocess` (raw case → :class:`CaseArrays`).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[DatasetOptions]] = DatasetOptions
    layout: ClassVar[str] = ""
    #: where to get the data (a URL), named when the root is missing
    download: ClassVar[str] = ""
    #: bump when preprocessing code changes what it writes (part of the cache key)
    preprocess_version: ClassVar[int] = 1

    def __init__(self, root=None, image_size: int = 256, targets=None, **options):
        self.options = parse_options(self.Options, options, self.name)
        self.root_path = resolve_root(root, self.name, self.layout, self.download)
        if not isinstance(image_size, int) or image_size < 8:
            raise ConfigError(f"dataset {self.name}: image_size = {image_size!r}; needs an integer ≥ 8")
        self.configure()
        super().__init__(root=str(self.root_path), image_size=image_size, targets=targets)
        self._discovery: Discovery | None = None
        self._manifest: dict | None = None
        found = self.discovery()
        if not found.sources:
            if found.problems:
                more = f" (and {len(found.problems) - 1} more problems)" if len(found.problems) > 1 else ""
                raise DatasetError(found.problems[0] + more)
            raise DatasetError(self.layout_error(found))

    # -- hooks ---------------------------------------------------------------------------------

    def configure(self) -> None:
        """Read what the layout declares (e.g. ``dataset.json``) before targets are resolved."""

    @abstractmethod
    def discover(self) -> Discovery:
        """The cases under the root (file listing only, no decoding)."""

    @abstractmethod
    def read_case(self, source: Source) -> Any:
        """Decode and check one case; raise :class:`DatasetError` naming the file on failure."""

    @abstractmethod
    def preprocess(self, source: Source, raw: Any) -> CaseArrays:
        """Turn a decoded case into the arrays the cache stores."""

    def select_slices(self, case_id: str, present: np.ndarray) -> np.ndarray | None:
        """Indices of the slices a case is served with (``None``: all)."""
        return None

    # -- discovery, cache key, manifest --------------------------------------------------------

    def discovery(self) -> Discovery:
        if self._discovery is None:
            found = self.discover()
            counts = Counter(s.case_id for s in found.sources)
            dupes = sorted(c for c, n in counts.items() if n > 1)
            for case_id in dupes:
                paths = [str(s.images[0]) for s in found.sources if s.case_id == case_id]
                found.problems.append(f"dataset {self.name}: case '{case_id}' found twice: {', '.join(paths)}")
            found.sources = sorted((s for s in found.sources if s.case_id not in dupes), key=lambda s: s.case_id)
            self._discovery = found
        return self._discovery

    def layout_error(self, found: Discovery) -> str:
        seen = f"found {found.seen} files" if found.seen else "found no files"
        if found.examples:
            seen += " (e.g. " + ", ".join(found.examples[:4]) + ")"
        return f"dataset {self.name}: no cases under {self.root_path}: expected {self.layout}; {seen}"

    def cache_params(self) -> dict:
        """Everything that changes the prepared arrays (hashed into the cache key)."""
        return {"dataset": self.name, "root": str(self.root_path), "image_size": self.image_size,
                "classes": list(self.classes), "in_channels": self.in_channels,
                "options": self.options.cache_params(), "format": FORMAT_VERSION,
                "preprocess": self.preprocess_version}

    @property
    def cache_dir(self) -> Path:
        params = json.dumps(self.cache_params(), sort_keys=True)
        key = hashlib.sha256(params.encode()).hexdigest()[:16]
        return cache_root(self.options.cache_dir) / self.name / key

    def source_key(self, path: Path) -> str:
        """A source file's name in the manifest: relative to the root where possible."""
        try:
            return str(path.relative_to(self.root_path))
        except ValueError:
            return str(path)

    def ensure_prepared(self) -> dict:
        """The manifest, preparing the dataset first if needed (once per instance)."""
        if self._manifest is None:
            from kdbench.datasets.progress import PrepareProgress

            prepare_dataset(self, progress=PrepareProgress(self.name))
            warn_if_no_foreground(self.name, self.root_path, self._manifest["cases"].values())
        return self._manifest

    # -- SegDataset ----------------------------------------------------------------------------

    def case_ids(self) -> list[str]:
        return sorted(self.ensure_prepared()["cases"])

    def official_split(self) -> dict[str, list[str]] | None:
        sources = self.discovery().sources
        train = [s.case_id for s in sources if s.part == "train"]
        test = [s.case_id for s in sources if s.part == "test"]
        if not train or not test:
            return None
        return {"train": train, "test": test}

    def load_case(self, case_id: str, _retry: bool = True) -> Case:
        manifest = self.ensure_prepared()
        entry = manifest["cases"].get(case_id)
        if entry is None:
            raise DatasetError(f"dataset {self.name}: no case '{case_id}' under {self.root_path}")
        folder = self.cache_dir / "cases" / entry["dir"]
        try:
            image = np.load(folder / "image.npy", mmap_mode="c")
            label = np.load(folder / "label.npy", mmap_mode="c")
            present = np.load(folder / "present.npy")
            eval_label = np.load(folder / "eval_label.npy", mmap_mode="c") if entry.get("eval_shape") else None
        except (OSError, ValueError) as exc:
            self._manifest = None
            if _retry:
                shutil.rmtree(folder, ignore_errors=True)  # prepare this case again
                return self.load_case(case_id, _retry=False)
            raise DatasetError(f"dataset {self.name}: prepared case {folder} is unreadable ({one_line(exc)}); "
                               f"delete {self.cache_dir} and prepare again") from None
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 255.0
        keep = self.select_slices(case_id, present)
        if keep is not None and len(keep) < image.shape[0]:
            image, label = image[keep], label[keep]
            eval_label = eval_label[keep] if eval_label is not None else None
        return Case(case_id=case_id, image=image, label=label, spacing=tuple(entry["spacing"]),
                    eval_label=eval_label,
                    eval_spacing=tuple(entry["eval_spacing"]) if entry.get("eval_spacing") else None)

    def prepared_case(self, source: Source) -> CaseArrays:
        """Read, check and preprocess one case (what preparation runs per case)."""
        arrays = self.preprocess(source, self.read_case(source))
        arrays.label = np.ascontiguousarray(arrays.label, dtype=np.uint8)
        if arrays.eval_label is not None:
            arrays.eval_label = np.ascontiguousarray(arrays.eval_label, dtype=np.uint8)
        return arrays


# -- preparation --------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: one preparer at a time is the user's business
        yield
        return
    try:
        fh = open(path, "a+")
    except OSError:  # a read-only cache: nothing will be written, so nothing to guard
        yield
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _write_json_atomic(path: Path, data: dict) -> None:
    """Replace ``path`` by ``data`` as JSON, atomically; a failed write leaves no temporary file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise cache_write_error(exc, path.parent, f"writing {path.name}") from None


def read_manifest(dataset: PreparedDataset) -> dict:
    """The manifest in the dataset's cache folder, or an empty one for its parameters."""
    path = dataset.cache_dir / "manifest.json"
    params = dataset.cache_params()
    fresh = {"format": FORMAT_VERSION, "dataset": dataset.name, "params": params, "signature": SIGNATURE,
             "cases": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return fresh
    if manifest.get("format") != FORMAT_VERSION or manifest.get("params") != params:
        return fresh
    return manifest


def _write_case(dataset: PreparedDataset, source: Source, cases_dir: Path) -> dict:
    """Prepare one case into a new folder under ``cases_dir``; returns its manifest entry.

    The folder is written under a temporary name and renamed into place when complete;
    any failure removes it.  A source file that cannot be read is a :class:`DatasetError`
    naming it; a cache that cannot be written (a full disk) a :class:`CacheWriteError`.
    """
    try:
        signatures = {dataset.source_key(p): file_signature(p) for p in source.files}
    except OSError as exc:
        raise DatasetError(f"{exc.filename or source.files[0]}: cannot read ({one_line(exc)})") from None
    arrays = dataset.prepared_case(source)
    name = f"{safe_name(source.case_id)}-{secrets.token_hex(4)}"
    tmp = cases_dir / f".tmp-{name}"
    try:
        tmp.mkdir(parents=True)
        np.save(tmp / "image.npy", np.ascontiguousarray(arrays.image))
        np.save(tmp / "label.npy", arrays.label)
        present = slice_presence(arrays.eval_label if arrays.eval_label is not None else arrays.label,
                                 dataset.num_classes)
        np.save(tmp / "present.npy", present)
        if arrays.eval_label is not None:
            np.save(tmp / "eval_label.npy", arrays.eval_label)
        entry = {
            "dir": name,
            "part": source.part,
            "sources": signatures,
            "slices": int(arrays.label.shape[0]),
            "shape": list(arrays.image.shape),
            "spacing": [float(v) for v in arrays.spacing],
            "eval_shape": list(arrays.eval_label.shape) if arrays.eval_label is not None else None,
            "eval_spacing": [float(v) for v in arrays.eval_spacing] if arrays.eval_spacing else None,
            "meta": arrays.meta,
            "foreground": bool(present.any()),
        }
        (tmp / "meta.json").write_text(json.dumps({"case_id": source.case_id, **entry}, indent=1, sort_keys=True))
        os.replace(tmp, cases_dir / name)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise cache_write_error(exc, cases_dir.parent, f"preparing {source.case_id}") from None
        raise
    return entry


def _init_worker(threads: int) -> None:
    """A preparation worker: a share of the cores for torch's resizing, not all of them."""
    import torch

    torch.set_num_threads(threads)


def _write_case_worker(dataset: PreparedDataset, source: Source, cases_dir: Path) -> dict:
    return _write_case(dataset, source, cases_dir)


def _sources_unchanged(dataset: PreparedDataset, source: Source, entry: dict) -> dict | None:
    """The case's refreshed signatures if none of its files changed, else ``None``."""
    recorded = entry.get("sources", {})
    keys = {dataset.source_key(p): p for p in source.files}
    if set(keys) != set(recorded):
        return None
    fresh = {}
    for key, path in keys.items():
        try:
            sig = file_signature(path, recorded[key])
        except OSError:
            return None
        if sig["size"] != recorded[key]["size"] or sig["blake2b"] != recorded[key]["blake2b"]:
            return None
        fresh[key] = sig
    return fresh


def prepare_dataset(dataset: SegDataset, progress: Callable[[int, int, str], None] | None = None,
                    workers: int = 1) -> Path:
    """Prepare ``dataset`` into its cache folder (once) and return that folder.

    Only cases whose parameters or source files changed are (re)prepared; an unchanged
    dataset reads no data and writes nothing.  ``progress(done, total, case_id)`` is
    called as cases finish; ``workers > 1`` prepares cases in that many processes.
    Cases that fail are skipped, the others prepared, and the failures then raised as
    one :class:`DatasetError` (the first, with a count of the rest).  A cache that
    cannot be written (:class:`CacheWriteError`: a full disk) stops preparation at once;
    the cases prepared before stay valid and nothing half-written is left.
    """
    if not isinstance(dataset, PreparedDataset):
        raise KdbenchError(f"dataset {type(dataset).__name__} is built in memory; it has nothing to prepare")
    folder = dataset.cache_dir
    cases_dir = folder / "cases"
    try:
        if not cases_dir.is_dir():
            cases_dir.mkdir(parents=True)
    except OSError as exc:
        raise DatasetError(f"dataset {dataset.name}: cannot create the cache folder {folder} ({one_line(exc)}); "
                           f"set KDBENCH_CACHE or the cache_dir option") from None
    found = dataset.discovery()
    errors = list(found.problems)
    with _locked(folder / ".lock"):
        manifest = read_manifest(dataset)
        cases = manifest["cases"]
        changed = False
        todo: list[Source] = []
        wanted = {s.case_id for s in found.sources}
        for case_id in [c for c in cases if c not in wanted]:
            del cases[case_id]
            changed = True
        for source in found.sources:
            entry = cases.get(source.case_id)
            if entry and not (cases_dir / entry["dir"]).is_dir():
                entry = None  # its arrays were deleted: prepare it again
            fresh = _sources_unchanged(dataset, source, entry) if entry else None
            if fresh is None:
                todo.append(source)
            elif fresh != entry["sources"]:
                entry["sources"] = fresh
                changed = True
        _remove_orphans(cases_dir, {e["dir"] for e in cases.values()})
        if changed:
            _write_json_atomic(folder / "manifest.json", manifest)

        written, made, replaced = [time.monotonic()], [], []

        def save_manifest() -> None:
            """Write the manifest if cases changed since it was last written; then the arrays of the
            cases it no longer names can go.  If it cannot be written, the manifest on disk still
            names the old arrays: the new ones are dropped."""
            if not made and not replaced:
                return
            try:
                _write_json_atomic(folder / "manifest.json", manifest)
            except CacheWriteError:
                for name in made:
                    shutil.rmtree(cases_dir / name, ignore_errors=True)
                raise
            for name in replaced:
                shutil.rmtree(cases_dir / name, ignore_errors=True)
            made.clear()
            replaced.clear()
            written[0] = time.monotonic()

        def done(source: Source, entry: dict | None, error: str | None, count: int) -> None:
            old = cases.pop(source.case_id, None)
            if entry is not None:
                cases[source.case_id] = entry
                made.append(entry["dir"])
            if old is not None:
                replaced.append(old["dir"])
            if time.monotonic() - written[0] >= MANIFEST_SECONDS:
                save_manifest()
            if error is not None:
                errors.append(error)
            if progress is not None:
                progress(count, len(todo), source.case_id)

        try:
            _prepare_cases(dataset, todo, cases_dir, workers, done)
        except CacheWriteError:  # keep the cases prepared before the disk filled
            with contextlib.suppress(CacheWriteError):
                save_manifest()
            raise
        save_manifest()
        if not (folder / "manifest.json").exists():
            _write_json_atomic(folder / "manifest.json", manifest)
    if errors:
        more = f" (and {len(errors) - 1} more problems; `kdbench datasets check {dataset.name}` lists them)" \
            if len(errors) > 1 else ""
        raise DatasetError(errors[0] + more)
    dataset._manifest = manifest
    return folder


def _prepare_cases(dataset: PreparedDataset, todo: list[Source], cases_dir: Path, workers: int, done) -> None:
    """Prepare the cases ``todo`` (in ``workers`` processes when more than one), calling
    ``done(source, entry, error, count)`` as each finishes; a full disk stops at once."""
    if workers > 1 and len(todo) > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(_write_case_worker, dataset, s, cases_dir): s for s in todo}
            for count, future in enumerate(as_completed(futures), 1):
                try:
                    done(futures[future], future.result(), None, count)
                except CacheWriteError:
                    pool.shutdown(cancel_futures=True)
                    raise
                except DatasetError as exc:
                    done(futures[future], None, str(exc), count)
        return
    for count, source in enumerate(todo, 1):
        try:
            entry = _write_case(dataset, source, cases_dir)
        except DatasetError as exc:
            if isinstance(exc, CacheWriteError):
                raise
            done(source, None, str(exc), count)
        else:
            done(source, entry, None, count)


def _remove_orphans(cases_dir: Path, keep: set[str]) -> None:
    """Delete case folders no manifest entry points to (left by a killed preparation)."""
    for child in cases_dir.iterdir():
        if child.name not in keep:
            shutil.rmtree(child, ignore_errors=True)


def case_rng(seed: int, case_id: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the case id (not on case order)."""
    return np.random.default_rng([int(seed), zlib.crc32(case_id.encode())])


__all__ = ["CaseArrays", "Discovery", "CacheWriteError", "PreparedDataset", "Source", "cache_root",
           "prepare_dataset", "read_manifest"]
