"""The model manifest: every downloadable model file, where it goes in ComfyUI, and the bundles workflows need.

`model_manifest.yaml` (repository root) lists one entry per file (Hugging Face repo, path, revision, size, hash
when known, ComfyUI folder and file name, licence, gating) and named bundles of entries. A *folder entry*
(`weights:` given) names a repo folder instead of one file: its files are listed on the Hub at install time. A
`download_url` entry comes from that URL instead of the Hub. `load_manifest` checks it with a plain-Python schema
and reports every problem at once. Stdlib + pyyaml only: install.py imports this before torch is guaranteed to
exist.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from videosdgx.paths import shipped
from videosdgx.runtime.errors import ConfigurationError

DEFAULT_MANIFEST = shipped("model_manifest.yaml")
MANIFEST_VARIABLE = "VIDEOSDGX_MANIFEST"  # a manifest of your own (a private mirror, extra bundles)
MODEL_FOLDERS = (
    "checkpoints",
    "diffusion_models",
    "text_encoders",
    "vae",
    "clip_vision",
    "loras",
    "audio_encoders",
    "latent_upscale_models",
    "model_patches",
    "upscale_models",
    "vae_approx",
)
STATUSES = ("available", "planned", "not_released")
# What a file is for in its bundle; pipelines find their files by role, never by folder or file name.
ROLES = (
    "dit", "dit_high", "dit_low", "dit_index", "checkpoint", "text_encoder", "text_encoder_index",
    "text_encoder_config", "tokenizer", "projections", "vae", "vae_config", "audio_vae", "vocoder", "clip_vision",
    "audio_encoder", "upsampler", "temporal_upsampler", "lora", "lora_low", "special_tokens", "duration_head",
    "dit_shot", "video_decoder",
)
INSTALL_COMMAND = "python install.py --models"

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URL = re.compile(r"^https?://[^/\s]+/\S+$")

# field name -> (accepted types, required)
_ENTRY_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "id": ((str,), True),
    "family": ((str,), True),
    "role": ((str,), True),
    "repo": ((str,), True),
    "path": ((str,), True),
    "revision": ((str,), True),
    "size": ((int, type(None)), True),
    "size_verified": ((bool,), True),
    "folder": ((str,), True),
    "filename": ((str,), True),
    "license": ((str,), True),
    "gated": ((bool,), True),
    "sha256": ((str,), False),
    "sha256_hint": ((str,), False),
    "alternatives": ((list,), False),
    "notes": ((str,), False),
    "weights": ((list,), False),
    "files": ((list,), False),
    "download_url": ((str,), False),
}
_BUNDLE_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), True),
    "family": ((str,), True),
    "variant": ((str,), False),
    "description": ((str,), True),
    "status": ((str,), True),
    "entries": ((list,), True),
    "message": ((str,), False),
    "links": ((list,), False),
    "last_checked": ((str,), False),
    "notes": ((str,), False),
}


@dataclass(frozen=True)
class Entry:
    """One downloadable file and where it is installed (`<ComfyUI folder>/<filename>`); or, for a folder entry
    (`weights` given), a repo folder `path` whose matching files go in the folder `<ComfyUI folder>/<filename>/`."""

    id: str
    family: str  # a family id of videosdgx.families
    role: str  # one of ROLES
    repo: str
    path: str
    revision: str
    size: int | None  # bytes; an estimate unless size_verified; None when unknown
    size_verified: bool
    folder: str
    filename: str
    license: str
    gated: bool
    sha256: str | None = None
    sha256_hint: str | None = None  # a partial hash from the spec: informative only, never checked
    alternatives: tuple[str, ...] = ()
    notes: str = ""
    weights: tuple[str, ...] = ()  # folder entry: patterns of its weight files, in order of preference
    files: tuple[str, ...] = ()  # folder entry: patterns of its other files (each must match)
    download_url: str | None = None  # a file outside the Hub (a pinned GitHub raw URL)

    @property
    def is_folder(self) -> bool:
        """Files listed on the Hub at install time (sizes and hashes from the listing)."""
        return bool(self.weights)

    @property
    def is_safetensors(self) -> bool:
        return self.filename.endswith(".safetensors")

    @property
    def url(self) -> str:
        if self.download_url:
            return self.download_url
        kind = "tree" if self.is_folder else "blob"
        return f"https://huggingface.co/{self.repo}/{kind}/{self.revision}/{self.path}".rstrip("/")


@dataclass(frozen=True)
class Bundle:
    """The files one workflow needs."""

    name: str
    family: str
    description: str
    status: str  # available | planned (nodes not implemented yet) | not_released (no public weights)
    entries: tuple[str, ...]
    variant: str = ""  # the family's variant these files are (default: the bundle's name)
    message: str = ""
    links: tuple[str, ...] = ()
    last_checked: str = ""
    notes: str = ""


class Manifest:
    """Validated manifest with lookups by entry id, bundle name and installed file name."""

    def __init__(self, entries: list[Entry], bundles: list[Bundle], source: Path | None = None):
        self.entries = {e.id: e for e in entries}
        self.bundles = {b.name: b for b in bundles}
        self.source = source

    def entry(self, entry_id: str) -> Entry:
        if entry_id not in self.entries:
            raise ConfigurationError(f"No model entry '{entry_id}' in {self._where}. Known: {', '.join(self.entries)}.")
        return self.entries[entry_id]

    def bundle(self, name: str) -> Bundle:
        if name not in self.bundles:
            raise ConfigurationError(
                f"No model bundle '{name}' in {self._where}. Run `python install.py --list` to see them: "
                f"{', '.join(self.bundles)}."
            )
        return self.bundles[name]

    def bundle_entries(self, name: str) -> list[Entry]:
        return [self.entries[i] for i in self.bundle(name).entries]

    def bundles_with(self, entry_id: str) -> list[Bundle]:
        return [b for b in self.bundles.values() if entry_id in b.entries]

    def find_by_filename(self, name: str) -> list[Entry]:
        """Entries installed under this file name (a bare name or a path ending in the entry's filename)."""
        wanted = PurePosixPath(str(name).replace("\\", "/"))

        def matches(entry: Entry) -> bool:
            parts = PurePosixPath(entry.filename).parts
            inside = entry.is_folder and wanted.parts[-len(parts) - 1:-1] == parts
            return wanted.parts[-len(parts):] == parts or inside

        return [e for e in self.entries.values() if matches(e)]

    def install_hint(self, name: str) -> str:
        """A sentence telling the user which bundle provides a missing file ('' if the manifest does not know it)."""
        hints = []
        for entry in self.find_by_filename(name):
            bundles = [b.name for b in self.bundles_with(entry.id)]
            where = f"models/{entry.folder}/{entry.filename}{'/' if entry.is_folder else ''}"
            others = f" (or one of {len(bundles) - 1} other bundles, see `python install.py --list`)"
            if bundles:
                hints.append(
                    f"{where} comes with bundle {bundles[0]}{others if len(bundles) > 1 else ''}: "
                    f"`{INSTALL_COMMAND} {bundles[0]}`"
                )
            else:
                hints.append(f"{where} is manifest entry '{entry.id}' ({entry.url}), not part of any bundle")
        return "; ".join(hints) + "." if hints else ""

    def bundle_size(self, name: str) -> tuple[int, bool]:
        """(sum of known file sizes in bytes, whether every size is known exactly; a folder entry's is an estimate
        until install time)."""
        entries = self.bundle_entries(name)
        total = sum(e.size or 0 for e in entries)
        return total, all(e.size is not None and e.size_verified for e in entries)

    @property
    def _where(self) -> str:
        return str(self.source) if self.source else "the model manifest"


def _check_fields(record: object, fields: dict, label: str, problems: list[str]) -> bool:
    if not isinstance(record, dict):
        problems.append(f"{label}: expected a mapping, got {type(record).__name__}")
        return False
    ok = True
    for name, (types, required) in fields.items():
        if name not in record:
            if required:
                problems.append(f"{label}: missing field '{name}'")
                ok = False
            continue
        value = record[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            problems.append(f"{label}: field '{name}' must be {expected}, got {value!r}")
            ok = False
    for name in record:
        if name not in fields:
            problems.append(f"{label}: unknown field '{name}'")
            ok = False
    return ok


def _check_family(raw: dict, label: str, problems: list[str]) -> None:
    from videosdgx.families import family_ids

    if raw["family"] not in family_ids():
        problems.append(f"{label}: family '{raw['family']}' is not one of {', '.join(family_ids())}")


def _check_entry(raw: dict, label: str, problems: list[str]) -> None:
    _check_family(raw, label, problems)
    if raw["role"] not in ROLES:
        problems.append(f"{label}: role '{raw['role']}' is not one of {', '.join(ROLES)}")
    if not _ID.match(raw["id"]):
        problems.append(f"{label}: id '{raw['id']}' must be lower-case letters, digits, '.', '_' or '-'")
    if not _REPO.match(raw["repo"]):
        problems.append(f"{label}: repo '{raw['repo']}' is not an 'owner/name' Hugging Face repo id")
    if raw["folder"] not in MODEL_FOLDERS:
        problems.append(f"{label}: folder '{raw['folder']}' is not one of {', '.join(MODEL_FOLDERS)}")
    filename = PurePosixPath(raw["filename"])
    if filename.is_absolute() or ".." in filename.parts or "\\" in raw["filename"] or not raw["filename"]:
        problems.append(f"{label}: filename '{raw['filename']}' must be a relative path inside the folder")
    if raw["size"] is not None and raw["size"] <= 0:
        problems.append(f"{label}: size must be a positive number of bytes or null")
    if raw["size_verified"] and raw["size"] is None:
        problems.append(f"{label}: size_verified is true but size is null")
    if "sha256" in raw and not _SHA256.match(raw["sha256"]):
        problems.append(f"{label}: sha256 must be 64 lower-case hex digits (partial hashes go in sha256_hint)")
    if not all(isinstance(a, str) for a in raw.get("alternatives", [])):
        problems.append(f"{label}: alternatives must be a list of entry ids")
    if "download_url" in raw:
        if not _URL.match(raw["download_url"]) or raw["revision"] not in raw["download_url"]:
            problems.append(f"{label}: download_url must be an http(s) URL pinned at the entry's revision (the "
                            f"commit '{raw['revision']}' must appear in it)")
        if "weights" in raw or "files" in raw:
            problems.append(f"{label}: a download_url entry is one file; it cannot have weights or files")
    if "files" in raw and "weights" not in raw:
        problems.append(f"{label}: files belong to a folder entry, which needs weights (patterns of its weight files)")
    if "weights" in raw:
        _check_folder_entry(raw, label, problems)


def _check_folder_entry(raw: dict, label: str, problems: list[str]) -> None:
    patterns = [*raw["weights"], *raw.get("files", [])]
    if not raw["weights"] or not all(isinstance(p, str) and p and "/" not in p for p in patterns):
        problems.append(f"{label}: weights and files must be lists of file-name patterns inside the folder (no '/'), "
                        "and weights must name at least one")
    if raw["size_verified"] or "sha256" in raw:
        problems.append(f"{label}: a folder entry's sizes and hashes come from the Hub listing at install time: "
                        "size is an estimate (size_verified false) and there is no sha256")
    if raw["path"].startswith("/") or raw["path"].endswith("/") or ".." in raw["path"].split("/"):
        problems.append(f"{label}: path '{raw['path']}' must be a folder of the repo without leading or trailing "
                        "'/' ('' for the repo root)")


def validate_manifest(data: object) -> list[str]:
    """Every schema problem of a parsed manifest, as readable sentences (empty list = valid)."""
    if not isinstance(data, dict) or set(data) != {"version", "entries", "bundles"}:
        return ["the manifest must be a mapping with exactly the keys 'version', 'entries' and 'bundles'"]
    problems: list[str] = []
    if data["version"] != 1:
        problems.append(f"unsupported manifest version {data['version']!r} (this code reads version 1)")
    if not isinstance(data["entries"], list) or not isinstance(data["bundles"], list):
        return problems + ["'entries' and 'bundles' must be lists"]
    ids: set[str] = set()
    destinations: dict[tuple[str, str], str] = {}
    entries = []
    for i, raw in enumerate(data["entries"]):
        label = f"entry #{i + 1} ({raw.get('id', '?')})" if isinstance(raw, dict) else f"entry #{i + 1}"
        if not _check_fields(raw, _ENTRY_FIELDS, label, problems):
            continue
        _check_entry(raw, label, problems)
        if raw["id"] in ids:
            problems.append(f"{label}: duplicate id '{raw['id']}'")
        ids.add(raw["id"])
        destination = (raw["folder"], raw["filename"])
        if destination in destinations:
            used_by = destinations[destination]
            problems.append(f"{label}: destination {raw['folder']}/{raw['filename']} is already used by '{used_by}'")
        destinations.setdefault(destination, raw["id"])
        entries.append(raw)
    for raw in entries:
        for alt in raw.get("alternatives", []):
            if alt not in ids:
                problems.append(f"entry '{raw['id']}': alternative '{alt}' is not an entry id")
    names: set[str] = set()
    for i, raw in enumerate(data["bundles"]):
        label = f"bundle #{i + 1} ({raw.get('name', '?')})" if isinstance(raw, dict) else f"bundle #{i + 1}"
        if not _check_fields(raw, _BUNDLE_FIELDS, label, problems):
            continue
        if raw["name"] in names:
            problems.append(f"{label}: duplicate bundle name '{raw['name']}'")
        names.add(raw["name"])
        _check_family(raw, label, problems)
        if raw["status"] not in STATUSES:
            problems.append(f"{label}: status '{raw['status']}' is not one of {', '.join(STATUSES)}")
        for entry_id in raw["entries"]:
            if entry_id not in ids:
                problems.append(f"{label}: entry '{entry_id}' does not exist")
        if raw["status"] == "not_released" and (raw["entries"] or not raw.get("message")):
            problems.append(f"{label}: a not_released bundle has no entries and must carry a 'message'")
        if raw["status"] != "not_released" and not raw["entries"]:
            problems.append(f"{label}: a bundle must list at least one entry")
    return problems


def parse_manifest(data: object, source: Path | None = None) -> Manifest:
    """Validate parsed YAML and build the `Manifest` (raises ConfigurationError listing every problem)."""
    problems = validate_manifest(data)
    if problems:
        where = source or "the model manifest"
        raise ConfigurationError(f"{where} is invalid:\n  - " + "\n  - ".join(problems))
    entries = [Entry(**{**raw, **{k: tuple(raw.get(k, ())) for k in ("alternatives", "weights", "files")}})
               for raw in data["entries"]]
    bundles = [
        Bundle(**{**raw, "entries": tuple(raw["entries"]), "links": tuple(raw.get("links", ())),
                  "variant": raw.get("variant", raw["name"])})
        for raw in data["bundles"]
    ]
    return Manifest(entries, bundles, source)


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read and validate a manifest YAML file (default: $VIDEOSDGX_MANIFEST, else the shipped model_manifest.yaml)."""
    path = Path(path or os.environ.get(MANIFEST_VARIABLE) or DEFAULT_MANIFEST)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"Model manifest not found: {path}.") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path} is not a text file (not UTF-8), so it is not a model manifest.") from None
    except OSError as exc:
        raise ConfigurationError(f"Cannot read the model manifest {path}: {exc.strerror or exc}.") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {exc}") from None
    return parse_manifest(data, path)
