"""DatasetSpec: which columns form which modality, which columns are tasks, validated with clear messages.

A spec is YAML (see data/*/spec.yaml). Validation happens in two stages: the spec alone (`load_spec`,
pydantic), then the spec against a table (`validate.check_dataset`). Both raise `SpecError` with one readable line.

Names: a modality, task or MNAR rule may be named as people name things (`liver panel`, `Week 20 CD4`,
`Stage (I–IV)`). Such a name becomes the entry's `label` (what every screen shows) and `name` becomes a safe
internal key derived from it (`liver_panel`): the key names encoders, decoders, checkpoint tensors and URLs.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9_]+$"
MAX_SPEC_BYTES = 4 * 2**20   # real specs are a few KB; a bigger file is not a spec
MAX_KEY_LEN = 64             # keys stay short enough for URLs and tensor names (longer names get derived keys)
STEP_NAMES = {"prior", "all modalities"}   # step labels the engine puts beside modality names


@lru_cache(maxsize=1)
def _reserved() -> frozenset[str]:
    """Keys torch refuses as ModuleDict entries (attributes such as `train`, `eval`, `keys`) or the engine
    uses as step names."""
    from torch import nn
    return frozenset(dir(nn.ModuleDict)) | STEP_NAMES


def is_key(name: object) -> bool:
    """True when `name` can serve as an internal key as written."""
    return isinstance(name, str) and len(name) <= MAX_KEY_LEN and re.fullmatch(ID_PATTERN, name) is not None \
        and name not in _reserved()


def derive_key(name: str, taken: set[str] = frozenset()) -> str:
    """A safe key for a display name: ASCII-folded, lower case, `_` between words; a short hash of the name
    is appended when that is empty, reserved or taken (so keys stay unique and stable for a given spec)."""
    if is_key(name) and name not in taken:
        return name
    # accents fold to their letter (ä -> a); any other non-ASCII character separates words (I–IV -> i_iv)
    text = "".join(c if c.isascii() else " " for c in unicodedata.normalize("NFKD", name)
                   if not unicodedata.combining(c)).lower()
    slug = re.sub(r"[^a-z0-9]+", "_", text).strip("_")[:MAX_KEY_LEN - 12].rstrip("_")
    if slug and slug not in taken and is_key(slug):
        return slug
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()
    for n in range(6, 41):
        key = f"{slug or 'n'}_{digest[:n]}"
        if key not in taken:
            return key
    raise ValueError(f"cannot derive a key for name '{name}'")   # 35 hash lengths all taken: not reachable


def _key_candidates(name: str) -> set[str]:
    """Keys that `derive_key` can give `name` (with or without a hash), to look an entry up by its text."""
    return {name, derive_key(name), derive_key(name, {derive_key(name)})}


def _derive_keys(raw: dict) -> dict:
    """Rewrite the names of modalities, tasks and MNAR rules into keys; the text as written becomes the label.
    References (a rule's `modality`) follow. Raises ValueError for an empty or repeated name."""
    raw, renamed = dict(raw), {}
    for field, what in (("modalities", "modality"), ("tasks", "task"), ("mnar_rules", "mnar rule")):
        entries = raw.get(field)
        if not isinstance(entries, list):
            continue
        entries = [dict(e) if isinstance(e, dict) else e for e in entries]
        names = [e.get("name") for e in entries if isinstance(e, dict)]
        for n in names:
            if isinstance(n, str) and not n.strip():
                raise ValueError(f"a {what} name is empty: give every {what} a name")
        texts = [n.strip() for n in names if isinstance(n, str)]
        dup = next((n for i, n in enumerate(texts) if n in texts[:i]), None)
        if dup is not None:
            raise ValueError(f"{what} name used twice: {dup}")
        taken = {n for n in names if is_key(n)}
        renamed[field] = {}
        for e in entries:
            n = e.get("name") if isinstance(e, dict) else None
            if not isinstance(n, str) or is_key(n):
                continue
            key = derive_key(n.strip(), taken)
            taken.add(key)
            renamed[field][n] = key
            e["name"] = key
            if not e.get("label"):
                e["label"] = n.strip()
        raw[field] = entries
    mods = renamed.get("modalities", {})
    for r in raw.get("mnar_rules") or []:
        if isinstance(r, dict) and r.get("modality") in mods:
            r["modality"] = mods[r["modality"]]
    return raw


class SpecError(ValueError):
    """Bad spec or data: the message names the file, key or column at fault."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModalitySpec(_Frozen):
    name: str = Field(pattern=ID_PATTERN, description="internal key (derived from any name; see module doc)")
    label: str = Field("", description="shown on screen; defaults to name")
    description: str = Field("", description="plain-language text shown beside the modality")
    columns: list[str] = Field(min_length=1, description="feature columns (any names)")
    column_labels: dict[str, str] = Field(default_factory=dict, description="per-column display names")
    units: dict[str, str] = Field(default_factory=dict, description="per-column units")
    categorical: list[str] = Field(default_factory=list, description="columns one-hot encoded even when their "
                                   "values are numbers (codes such as 1/2/3, postcodes)")
    kind: Literal["tabular", "sequence"] = Field("tabular", description="sequence = long-format table over time")
    table: str | None = Field(None, description="sequence only: long table path, relative to the spec")
    key: str | None = Field(None, description="sequence only: column joining the long table to id_column")
    time_column: str | None = Field(None, description="sequence only: orders the rows of one record")

    @property
    def display(self) -> str:
        return self.label or self.name

    @model_validator(mode="after")
    def _sequence_fields(self):
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"modality '{self.name}' lists a column twice")
        stray = [c for c in self.categorical if c not in self.columns]
        if stray:
            raise ValueError(f"categorical column '{stray[0]}' of modality '{self.display}' is not one of its "
                             f"columns")
        if self.kind == "sequence":
            missing = [k for k in ("table", "key", "time_column") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"sequence modality '{self.name}' needs {', '.join(missing)}")
        return self


class TaskSpec(_Frozen):
    name: str = Field(pattern=ID_PATTERN, description="internal key (derived from any name; see module doc)")
    label: str = Field("", description="shown on screen; defaults to name")
    description: str = Field("", description="plain-language meaning of the outcome")
    column: str = Field(description="target column of the main table")
    type: Literal["binary", "multiclass", "regression"]
    positive: str | int | float | bool | None = Field(None, description="binary: the value meaning 'positive'")
    units: str = Field("", description="regression: the target's units")
    classes: list[str] | None = Field(None, description="multiclass: class order for display (e.g. by severity)")
    class_labels: dict[str, str] = Field(default_factory=dict, description="plain names for class values")
    weight: float = Field(1.0, gt=0, description="weight of this task in the loss")

    @property
    def display(self) -> str:
        return self.label or self.name

    def class_display(self, value: str) -> str:
        """A class value as shown on screen: its plain name from `class_labels`, else the value itself."""
        return self.class_labels.get(str(value), str(value))


class MnarRule(_Frozen):
    """Rule-based MNAR: `modality` is observed only where `column op value` holds."""
    name: str = Field(pattern=ID_PATTERN)
    label: str = Field("", description="shown on screen; defaults to name")
    modality: str
    column: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: float | int | str
    description: str = ""

    @property
    def display(self) -> str:
        return self.label or self.name


class DatasetSpec(_Frozen):
    name: str = Field(pattern=ID_PATTERN)
    title: str = ""
    description: str = ""
    data: str | None = Field(None, description="main table, relative to the spec file")
    id_column: str | None = None
    modalities: list[ModalitySpec] = Field(min_length=1)
    tasks: list[TaskSpec] = Field(min_length=1)
    mnar_rules: list[MnarRule] = Field(default_factory=list)
    base_dir: str = Field("", description="folder of the spec file; set by load_spec, resolves relative paths")

    @model_validator(mode="before")
    @classmethod
    def _keys_from_names(cls, raw):
        return _derive_keys(raw) if isinstance(raw, dict) else raw

    @field_validator("modalities")
    @classmethod
    def _unique_modalities(cls, mods):
        names = [m.name for m in mods]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"modality name used twice: {sorted(dup)[0]}")
        seen: dict[str, str] = {}
        for m in mods:
            for c in m.columns:
                if m.kind == "tabular" and c in seen:
                    raise ValueError(f"column '{c}' is in two modalities ('{seen[c]}' and '{m.name}')")
                if m.kind == "tabular":
                    seen[c] = m.name
        return mods

    @model_validator(mode="after")
    def _cross_checks(self):
        names = [t.name for t in self.tasks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"task name used twice: {sorted(dup)[0]}")
        features = {c for m in self.modalities if m.kind == "tabular" for c in m.columns}
        for t in self.tasks:
            if t.column in features:
                raise ValueError(f"target column '{t.column}' of task '{t.name}' is also used as a feature")
        if self.id_column is not None and self.id_column in features:
            raise ValueError(f"id column '{self.id_column}' is also used as a feature")
        if any(m.kind == "sequence" for m in self.modalities) and self.id_column is None:
            raise ValueError("a sequence modality needs id_column to join its table")
        mods = {m.name for m in self.modalities}
        for r in self.mnar_rules:
            if r.modality not in mods:
                raise ValueError(f"mnar rule '{r.name}' names unknown modality '{r.modality}'")
        return self

    # --- helpers -------------------------------------------------------------------------------------
    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def modality(self, name: str) -> ModalitySpec:
        """By key, or by the name as shown (`liver panel` finds the modality keyed `liver_panel`)."""
        return _lookup(self.modalities, name, "modality")

    def task(self, name: str) -> TaskSpec:
        """By key, or by the name as shown."""
        return _lookup(self.tasks, name, "task")

    def resolve(self, relative: str) -> Path:
        return Path(self.base_dir) / relative

    def to_json(self) -> dict:
        return self.model_dump(mode="json", exclude={"base_dir"})


def _lookup(entries: list, name: str, what: str):
    for e in entries:
        if e.name == name:
            return e
    text = name.strip()
    for e in entries:
        if e.display == text:
            return e
    for e in entries:
        if e.label and text and e.name in _key_candidates(text):
            return e
    raise SpecError(f"unknown {what} '{name}' (spec has: {', '.join(e.display for e in entries)})")


def _spec_errors(err: ValidationError, source: str, raw: dict) -> SpecError:
    """Every problem pydantic found, one line each (`.problems`), joined with "; " in the message."""
    problems = list(dict.fromkeys(_error_line(e, source, raw) for e in err.errors()))
    out = SpecError("; ".join(problems))
    out.problems = problems
    return out


def _error_line(e: dict, source: str, raw: dict) -> str:
    """One line: where (tasks.1.type becomes tasks[death].type when the entry has a name) and what."""
    parts, node = [], raw
    for p in e["loc"]:
        named = isinstance(p, int) and isinstance(node, list) and p < len(node) and isinstance(node[p], dict) \
            and isinstance(node[p].get("name"), str)
        if named and parts:
            parts[-1] += f"[{node[p]['name']}]"
        else:
            parts.append(str(p))
        node = node[p] if isinstance(node, (list, dict)) and (isinstance(p, int) and isinstance(node, list)
                                                                and p < len(node) or p in node) else None
    where = ".".join(parts) or "top level"
    msg = e["msg"].removeprefix("Value error, ")
    return f"{source}: {where}: {msg}"


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping repeats a key: YAML itself would silently keep the last value."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a repeated key in a mapping (merge keys `<<:` may still override)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:          # an unhashable key: the base class reports it
                    continue
                if repeated:
                    shown = " ".join(str(key).split())[:80]
                    raise _DuplicateKey(None, None, f"key '{shown}' appears twice", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def spec_from_dict(raw: object, source: str = "spec", base_dir: str = "") -> DatasetSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping with keys name, modalities, tasks")
    try:
        return DatasetSpec.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as err:
        raise _spec_errors(err, source, raw) from None
    except RecursionError:
        raise SpecError(f"{source}: spec is nested too deeply") from None


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate a YAML spec; relative paths inside it resolve against its folder."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError(f"{path}: spec file is over the {MAX_SPEC_BYTES // 2**20} MB cap")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: spec is not UTF-8 text") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read spec ({err.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)   # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as err:
        line = err.problem_mark.line + 1
        raise SpecError(f"{path}: line {line}: {err.problem} (YAML would silently keep only the last one): "
                        f"remove or rename one") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{path}:{line} is not valid YAML") from None
    except RecursionError:
        raise SpecError(f"{path}: spec is nested too deeply") from None
    return spec_from_dict(raw, str(path), str(path.parent))
