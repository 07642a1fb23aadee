"""The training configuration: one schema, read from YAML or TOML, overridable from the command line.

A config file has up to eleven sections (every key has a default, so a file only
says what differs)::

    data:        manifest, root, train_split, valid_split, segment_seconds, task, ...
    frontend:    preset, overrides (any FrontendConfig field; sets the sample rate)
    student:     kind (mobilenet | plain_cnn | causal_cnn | crnn), params (keyword arguments)
    teacher:     cache_dir, teachers (identities or names), temperature, weights,
                 regulariser (auto | none | conreg | disreg), embedding_teachers
    method:      labels | kd | kd+conreg | kd+disreg | mean_teacher | reprogram | finetune
    optim:       lr, weight_decay, batch_size, steps, warmup_steps, schedule, ema_decay,
                 seed, amp, grad_clip, eval_every, device
    augment:     mixup_alpha, time_masks/time_mask_frames, freq_masks/freq_mask_bins,
                 gain_db, time_shift_seconds, noise_probability, noise_snr_db
    sampling:    class_balanced
    checkpoint:  every, keep
    logging:     csv, jsonl, tensorboard, every, progress
    reprogram:   base_checkpoint, transform, channels, kernel, head_input, max_trainable_parameters
                 (methods reprogram and finetune only; see `edgetag.training.reprogram`)

A small YAML config::

    data: {manifest: data/gm/manifest.csv, segment_seconds: 1.0, task: multi_label}
    frontend: {preset: default}
    student: {kind: mobilenet, params: {width: 0.5}}
    teacher: {cache_dir: cache/musicnn, teachers: [musicnn-mtt], temperature: 2.0,
              label_columns: [3, 17, 40]}
    method: kd+conreg
    optim: {lr: 1.0e-3, batch_size: 64, steps: 3000, warmup_steps: 200, ema_decay: 0.999}
    augment: {mixup_alpha: 0.3, time_masks: 2, freq_masks: 2, gain_db: [-6, 6]}
    checkpoint: {every: 500, keep: 3}

The same in TOML has one ``[section]`` table per section and ``method = "kd+conreg"``
at the top.

`load_config(path, overrides)` reads the file (``.yaml``/``.yml`` with PyYAML,
``.toml`` with the standard library's tomllib), applies dotted ``key=value``
overrides (``optim.lr=3e-4``, ``augment.gain_db=[-6,6]``, values parsed as
YAML scalars/lists), and validates: an unknown section or key, a value of the
wrong type, or an out-of-range value raises `ConfigError` naming the key and
what was expected. `config_hash` is the sha256 of the canonical JSON of the
resolved config (sorted keys, no whitespace); the trainer writes the resolved
config and its hash into the run directory for provenance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = [
    "METHODS",
    "AugmentConfig",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "FrontendSection",
    "LoggingConfig",
    "OptimConfig",
    "ReprogramSection",
    "SamplingConfig",
    "StudentSection",
    "TeacherSection",
    "TrainConfig",
    "config_from_dict",
    "config_hash",
    "config_to_dict",
    "load_config",
    "parse_override",
]

METHODS = ("labels", "kd", "kd+conreg", "kd+disreg", "mean_teacher", "reprogram", "finetune")
Method = Literal["labels", "kd", "kd+conreg", "kd+disreg", "mean_teacher", "reprogram", "finetune"]
#: Methods that start from a pretrained student (``reprogram.base_checkpoint``) instead of building one.
BASE_METHODS = ("reprogram", "finetune")


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the key."""


@dataclass
class DataConfig:
    manifest: str = ""
    """The manifest (CSV or JSONL, see `edgetag.training.manifest_format`). Relative paths are relative to the config file."""
    root: str | None = None
    """Directory the manifest's paths are relative to (default: the manifest's directory)."""
    train_split: str = "train"
    valid_split: str | None = "valid"
    """Evaluated every ``optim.eval_every`` steps; None or a split with no entries: no evaluation."""
    segment_seconds: float = 1.0
    """Length of one training example (a crop of the segment; shorter segments are padded)."""
    task: Literal["multi_label", "multi_class"] = "multi_label"
    labels: list[str] | None = None
    """Fixed label vocabulary (default: every label in the manifest, sorted)."""
    feature_cache: str | None = None
    """Directory for precomputed features (default: ``<run_dir>/features``); keyed by content and front end."""


@dataclass
class FrontendSection:
    preset: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    """FrontendConfig fields that differ from the preset (e.g. ``n_bins: 40``)."""


@dataclass
class StudentSection:
    kind: str = "causal_cnn"
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the student (``window_frames`` of a window student is set from the segment)."""
    decision_seconds: float | None = None
    """Window students: seconds between decisions at run time (the card's hop); default half a window."""


@dataclass
class TeacherSection:
    cache_dir: str | None = None
    """TeacherCache directory filled by ``edgetag teach`` (required by every method but labels/mean_teacher)."""
    teachers: list[str] = field(default_factory=list)
    """Teacher identities (``name@hash``) or names; their scores are averaged as soft targets."""
    embedding_teachers: list[str] | None = None
    """Teachers whose embeddings regularise the student (default: all of ``teachers``)."""
    label_columns: list[int] | None = None
    """Teacher score column for each dataset label, when the teacher's label set differs."""
    sample_rates: list[int] = field(default_factory=list)
    """Sample rates to try when checking cached entries against the audio (the front end's is tried first)."""
    score_kind: Literal["probabilities", "logits"] = "probabilities"
    """What the cached teacher scores are (the cache does not record it; CREPE and musicnn give probabilities)."""
    temperature: float = 2.0
    label_weight: float = 1.0
    """Weight of the (masked) label loss."""
    kd_weight: float = 1.0
    """Weight of the soft-target loss."""
    embedding_weight: float = 1.0
    """Weight of the embedding regulariser (Con-Reg / Dis-Reg)."""
    consistency_weight: float = 1.0
    """Weight of the mean teacher's consistency loss."""
    consistency_rampup_steps: int = 0
    """Steps over which the consistency weight rises as exp(-5 (1 - t)^2) (Tarvainen & Valpola); 0: full from the start."""
    label_enhance: bool = False
    """Fill missing labels from a confident teacher (p > label_enhance_hi or < label_enhance_lo); multi-label only."""
    label_enhance_hi: float = 0.9
    label_enhance_lo: float = 0.1
    regulariser: Literal["auto", "none", "conreg", "disreg"] = "auto"
    """Embedding regulariser; ``auto``: from the method (kd+conreg, kd+disreg)."""
    verify_audio: bool = True
    """Check each cached teacher window against the audio's content hash (decodes every window again:
    minutes per hour of Opus/MP3). False: find windows by manifest path and bounds, trusting that the
    files did not change since `edgetag teach` wrote the cache."""
    partial: bool = False
    """Teachers may lack outputs for some rows (``reference-f0`` has none where a row has no f0 annotation):
    each student frame then learns from the mean of the teachers that have a frame near it, and a row
    with none adds no soft-target loss. Frame-level targets only. False: every teacher must cover every
    row, and a frame gets a target only where all of them have one."""


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-2
    eps: float = 1e-8
    """AdamW's epsilon."""
    batch_size: int = 32
    """Global batch: split evenly over the processes of a distributed run."""
    steps: int = 1000
    warmup_steps: int = 100
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.0
    """Floor of the cosine schedule, as a fraction of ``lr``."""
    ema_decay: float = 0.999
    """EMA of the weights (0 disables it); the exported student holds the EMA weights."""
    seed: int = 0
    amp: bool = True
    """Mixed precision (autocast + GradScaler); only ever on CUDA."""
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value (0: no clipping)."""
    eval_every: int = 0
    """Evaluate on the validation split every N steps (0: only at the end)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass
class AugmentConfig:
    mixup_alpha: float = 0.0
    """Beta(alpha, alpha) mixing of pairs within each process's batch (0: off)."""
    time_masks: int = 0
    time_mask_frames: int = 10
    freq_masks: int = 0
    freq_mask_bins: int = 8
    gain_db: list[float] = field(default_factory=lambda: [0.0, 0.0])
    """Uniform random gain range [low, high] in dB, applied exactly in the feature domain."""
    time_shift_seconds: float = 0.0
    """Random circular shift of the features (and frame targets) by up to this much."""
    noise_probability: float = 0.0
    """Share of examples that get white or pink background noise (`edgetag.training.augment.add_noise`; 0: off)."""
    noise_snr_db: list[float] = field(default_factory=lambda: [0.0, 30.0])
    """Uniform SNR range [low, high] in dB of that noise, on summed band energies."""


@dataclass
class SamplingConfig:
    class_balanced: bool = False
    """Draw examples with probability inversely proportional to their labels' frequency."""


@dataclass
class CheckpointConfig:
    every: int = 500
    """Write the training state every N steps (0: only at the end)."""
    keep: int = 3
    """Keep the newest K training-state checkpoints."""


@dataclass
class LoggingConfig:
    csv: bool = True
    jsonl: bool = True
    tensorboard: bool = False
    """Also write TensorBoard events (only when ``torch.utils.tensorboard`` imports)."""
    every: int = 1
    """Log training metrics every N steps."""
    progress: bool = True


@dataclass
class ReprogramSection:
    """New labels around a pretrained student: ``reprogram`` trains only the input transform and a linear
    output mapping (the student frozen), ``finetune`` all of it (`edgetag.training.reprogram`)."""

    base_checkpoint: str = ""
    """The pretrained student (a ``student.pt`` of ``edgetag distill``). Relative paths are relative to the config file."""
    transform: Literal["none", "affine", "conv", "additive"] = "affine"
    """On the standardised features, from the identity: ``affine`` (gain and shift per band; any student, no cost
    on the device), ``conv`` (affine + a residual two-layer convolution), ``additive`` (affine + a value per
    frame and band: window students; the best measured, benchmarks/reprogram.py)."""
    channels: int = 8
    """Hidden channels of the ``conv`` transform."""
    kernel: list[int] | None = None
    """``conv`` kernel [frames, bands], odd; default [3, 5], or [1, 5] for a stateful student (one frame at a time)."""
    head_input: Literal["logits", "embedding"] = "embedding"
    """What the linear output mapping reads: the student's embedding, or its logits (the paper's; 20 points
    of macro F1 below on the instruments renders)."""
    max_trainable_parameters: int = 20000
    """``reprogram`` refuses to train more parameters than this (transform plus output mapping)."""


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    frontend: FrontendSection = field(default_factory=FrontendSection)
    student: StudentSection = field(default_factory=StudentSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    method: Method = "labels"
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    reprogram: ReprogramSection | None = None
    """Only with a method of `BASE_METHODS`; absent otherwise (and then left out of the config's hash)."""

    # ------------------------------------------------------------------ derived
    @property
    def regulariser(self) -> str:
        """``none``, ``conreg`` or ``disreg``, from the method and ``teacher.regulariser``."""
        r = self.teacher.regulariser
        if r != "auto":
            return r
        return {"kd+conreg": "conreg", "kd+disreg": "disreg"}.get(self.method, "none")

    @property
    def uses_teacher_cache(self) -> bool:
        return self.method in ("kd", "kd+conreg", "kd+disreg") or self.regulariser != "none"

    def frontend_config(self) -> Any:
        from edgetag.runtime.frontend import FrontendConfig

        try:
            return FrontendConfig.preset(self.frontend.preset, **self.frontend.overrides)
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"frontend: {exc}") from None


# ---------------------------------------------------------------------- conversion
def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        (inner,) = get_args(tp) or (Any,)
        return f"list of {_type_name(inner)}"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against (and gently coerced to) type ``tp``; ConfigError names ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (mapping), got {type(value).__name__} {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{key}: expected one of {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got null")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is list:
        (inner,) = get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        return [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return {str(k): v for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {type(value).__name__} {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - schema bug


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"section '{prefix}'" if prefix else "the config"
        raise ConfigError(
            f"unknown key(s) {', '.join(repr(_join(prefix, k)) for k in unknown)} in {where}; "
            f"known: {', '.join(names)}"
        )
    kwargs = {k: _convert(v, hints[k], _join(prefix, k)) for k, v in data.items()}
    return cls(**kwargs)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a `TrainConfig` from plain data (the parsed file)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    config = _build(TrainConfig, data)
    validate(config)
    return config


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain JSON-able data of a config (the inverse of `config_from_dict`).

    An absent ``reprogram`` section is left out, so configs written before the section
    existed keep their hash (and their run directories still resume)."""
    data = dataclasses.asdict(config)
    if data.get("reprogram") is None:
        data.pop("reprogram", None)
    return data


def config_hash(config: TrainConfig) -> str:
    """sha256 (hex) of the canonical JSON of the resolved config."""
    blob = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def validate(c: TrainConfig) -> None:
    """Range and consistency checks that types alone cannot express."""

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    need(bool(c.data.manifest), "data.manifest: required (path of the training manifest)")
    need(c.data.segment_seconds > 0, f"data.segment_seconds: must be > 0, got {c.data.segment_seconds}")
    o = c.optim
    need(o.lr > 0, f"optim.lr: must be > 0, got {o.lr}")
    need(o.eps > 0, f"optim.eps: must be > 0, got {o.eps}")
    need(o.weight_decay >= 0, f"optim.weight_decay: must be >= 0, got {o.weight_decay}")
    need(o.batch_size >= 1, f"optim.batch_size: must be >= 1, got {o.batch_size}")
    need(o.steps >= 1, f"optim.steps: must be >= 1, got {o.steps}")
    need(o.warmup_steps >= 0, f"optim.warmup_steps: must be >= 0, got {o.warmup_steps}")
    need(0.0 <= o.min_lr_ratio <= 1.0, f"optim.min_lr_ratio: must be in [0, 1], got {o.min_lr_ratio}")
    need(0.0 <= o.ema_decay < 1.0, f"optim.ema_decay: must be in [0, 1), got {o.ema_decay}")
    need(o.grad_clip >= 0, f"optim.grad_clip: must be >= 0, got {o.grad_clip}")
    need(o.eval_every >= 0, f"optim.eval_every: must be >= 0, got {o.eval_every}")
    a = c.augment
    need(a.mixup_alpha >= 0, f"augment.mixup_alpha: must be >= 0, got {a.mixup_alpha}")
    need(a.time_masks >= 0 and a.freq_masks >= 0, "augment.time_masks / freq_masks: must be >= 0")
    need(a.time_mask_frames >= 0 and a.freq_mask_bins >= 0, "augment.time_mask_frames / freq_mask_bins: must be >= 0")
    need(len(a.gain_db) == 2 and a.gain_db[0] <= a.gain_db[1], f"augment.gain_db: expected [low, high] with low <= high, got {a.gain_db}")
    need(0.0 <= a.noise_probability <= 1.0, f"augment.noise_probability: must be in [0, 1], got {a.noise_probability}")
    need(len(a.noise_snr_db) == 2 and a.noise_snr_db[0] <= a.noise_snr_db[1],
         f"augment.noise_snr_db: expected [low, high] with low <= high, got {a.noise_snr_db}")
    need(a.time_shift_seconds >= 0, f"augment.time_shift_seconds: must be >= 0, got {a.time_shift_seconds}")
    need(c.checkpoint.every >= 0, f"checkpoint.every: must be >= 0, got {c.checkpoint.every}")
    need(c.checkpoint.keep >= 1, f"checkpoint.keep: must be >= 1, got {c.checkpoint.keep}")
    need(c.logging.every >= 1, f"logging.every: must be >= 1, got {c.logging.every}")
    t = c.teacher
    need(t.temperature > 0, f"teacher.temperature: must be > 0, got {t.temperature}")
    for name in ("label_weight", "kd_weight", "embedding_weight", "consistency_weight", "consistency_rampup_steps"):
        need(getattr(t, name) >= 0, f"teacher.{name}: must be >= 0, got {getattr(t, name)}")
    need(0.0 <= t.label_enhance_lo <= t.label_enhance_hi <= 1.0,
         f"teacher.label_enhance_lo/hi: need 0 <= lo <= hi <= 1, got {t.label_enhance_lo}, {t.label_enhance_hi}")
    if t.label_enhance:
        need(c.data.task == "multi_label", "teacher.label_enhance: only for multi_label tasks")
        need(c.uses_teacher_cache, f"teacher.label_enhance: needs a teacher (method {c.method!r} uses none)")
    _validate_reprogram(c)
    if c.uses_teacher_cache:
        need(t.cache_dir is not None, f"teacher.cache_dir: required by method {c.method!r}")
        need(bool(t.teachers), f"teacher.teachers: method {c.method!r} needs at least one teacher identity")
    if c.method in ("kd+conreg", "kd+disreg") and t.regulariser not in ("auto", c.regulariser):
        raise ConfigError(f"teacher.regulariser: {t.regulariser!r} contradicts method {c.method!r}")
    if c.method == "mean_teacher":
        need(o.ema_decay > 0, "optim.ema_decay: the mean_teacher method needs an EMA (ema_decay > 0)")
    from edgetag.training.students import STUDENTS

    need(c.student.decision_seconds is None or c.student.decision_seconds > 0,
         f"student.decision_seconds must be positive, got {c.student.decision_seconds}")
    need(c.student.kind in STUDENTS, f"student.kind: unknown kind {c.student.kind!r}; known: {', '.join(sorted(STUDENTS))}")
    c.frontend_config()  # raises ConfigError on a bad preset or override


def _validate_reprogram(c: TrainConfig) -> None:
    """The ``reprogram`` section belongs to the methods that start from a base checkpoint, and they need it."""
    r = c.reprogram
    if c.method not in BASE_METHODS:
        if r is not None:
            raise ConfigError(f"reprogram: only used by methods {' and '.join(BASE_METHODS)}, but method is {c.method!r}")
        return
    if r is None or not r.base_checkpoint:
        raise ConfigError(f"reprogram.base_checkpoint: required by method {c.method!r} (the student.pt to start from)")
    if c.regulariser != "none" or c.uses_teacher_cache:
        raise ConfigError(f"teacher.regulariser: method {c.method!r} learns from labels only; "
                          f"set teacher.regulariser to none (got {c.teacher.regulariser!r})")
    if r.channels < 1:
        raise ConfigError(f"reprogram.channels: must be >= 1, got {r.channels}")
    if r.kernel is not None and (len(r.kernel) != 2 or any(k < 1 or k % 2 == 0 for k in r.kernel)):
        raise ConfigError(f"reprogram.kernel: expected [frames, bands], odd sizes >= 1, got {r.kernel}")
    if r.max_trainable_parameters < 1:
        raise ConfigError(f"reprogram.max_trainable_parameters: must be >= 1, got {r.max_trainable_parameters}")


# ---------------------------------------------------------------------- files and overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value parsed as a YAML scalar or list)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. optim.lr=3e-4")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty component in key {key!r}")
    return parts, _parse_value(raw)


def _parse_value(raw: str) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is in the train extra
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return raw
    # YAML 1.1 reads 3e-4 as a string; accept numbers written that way.
    if isinstance(value, str):
        try:
            return float(value) if any(ch in value for ch in ".eE") else int(value)
        except ValueError:
            pass
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in the parsed file (unknown keys are caught later by validation)."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, p in enumerate(parts[:-1]):
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                # frontend.overrides / student.params are free mappings; other leaves are not.
                raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (.yaml/.yml) or TOML (.toml) file into plain data."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    elif suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    else:
        raise ConfigError(f"{path}: use a .yaml, .yml or .toml config file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, *, base: dict[str, Any] | None = None) -> TrainConfig:
    """Read, override and validate a config.

    Relative ``data.manifest``, ``data.root``, ``data.feature_cache``,
    ``teacher.cache_dir`` and ``reprogram.base_checkpoint`` in a file are made absolute against the file's
    directory, so a run does not depend on the working directory.
    """
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = read_config_file(path)
        folder = Path(path).resolve().parent
        for section, key in (("data", "manifest"), ("data", "root"), ("data", "feature_cache"), ("teacher", "cache_dir"),
                             ("reprogram", "base_checkpoint")):
            sec = data.get(section)
            if isinstance(sec, dict) and isinstance(sec.get(key), str) and sec[key] and not Path(sec[key]).is_absolute():
                sec[key] = str(folder / sec[key])
    data = apply_overrides(data, list(overrides or []))
    return config_from_dict(data)


def dump_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (or JSON for a .json path)."""
    path = Path(path)
    data = config_to_dict(config)
    if path.suffix == ".json":
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")

