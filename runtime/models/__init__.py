"""The models shipped inside the package, by name.

``edgetag listen`` with no ``--model`` runs `DEFAULT_MODEL`; ``--model NAME``
takes any name in `BUILTIN_MODELS` (``edgetag models`` lists them with their
measured metrics). Each is an ordinary edgetag ONNX file in this folder, with
its card (labels, front end, metrics, provenance) inside; the recipes under
``training/recipes/`` rebuild them:

- ``music-tags``: the 50 MagnaTagATune tags, distilled from the musicnn
  MTT + MSD ensemble (``training/recipes/musictag``); a decision every 100 ms
  on the last 1 s of audio.
- ``music-tags-voices``: the same network and teacher, also trained on real speech mixed
  over the music (``run.py --voices``): its vocal tags rise when someone speaks over the
  music (``music-tags``' fall; singing was not available to measure), at a little less
  agreement with the teacher on the instrumental valid packages (README, Built-in models).
- ``pitch``: frame-level pitch over CREPE's 360 bins, distilled from CREPE full
  (``training/recipes/pitch``); ``listen`` shows a tuner.
- ``pitch-small``: the same task in a student an eighth the size (136,840 parameters in two
  causal blocks), trained with level and noise augmentation and run two frames per call: a
  third (AMD EPYC) to a sixth (Intel Xeon) of ``pitch``'s streaming CPU for 10 ms more latency
  (42 ms), as accurate on the recipe's renders, steadier across levels, further from CREPE on
  game music and speech (numbers in the README's Built-in models).

``NAME-int8`` is the same model quantised to int8 (static, per-channel, 7-bit
weights, so it computes the same on every CPU), smaller and on most CPUs
faster, at the accuracy its card states. Every file carries a digest and a
test vector: ``edgetag verify`` checks them on the CPU at hand.
"""

from __future__ import annotations

from pathlib import Path

from edgetag.runtime.formats import sibling

MODELS_DIR = Path(__file__).resolve().parent

#: The shipped models, by the name of their fp32 file.
BASE_MODELS: tuple[str, ...] = ("music-tags", "music-tags-voices", "pitch", "pitch-small")
#: name -> file in this folder: each model's fp32 file, and its int8 sibling as NAME-int8 (`runtime.formats`)
BUILTIN_MODELS: dict[str, str] = {
    name: sibling(f"{base}.onnx", key).name
    for base in BASE_MODELS
    for name, key in ((base, "fp32"), (f"{base}-int8", "int8"))
}
DEFAULT_MODEL = "music-tags"


class UnknownModelError(FileNotFoundError):
    """Neither a model file nor the name of a shipped model."""


def builtin_path(name: str) -> Path:
    """The file of a shipped model; raises `UnknownModelError` naming what exists."""
    try:
        path = MODELS_DIR / BUILTIN_MODELS[name]
    except KeyError:
        raise UnknownModelError(f"no built-in model {name!r}; built-in models: {', '.join(BUILTIN_MODELS)}") from None
    if not path.is_file():
        raise UnknownModelError(
            f"built-in model {name!r} is not in this installation ({path} is missing); "
            "reinstall edgetag, or pass --model FILE.onnx"
        )
    return path


def resolve_model(spec: str | None) -> Path:
    """A ``--model`` argument as a file: an existing path, else a built-in name (None: the default model)."""
    if spec is None:
        return builtin_path(DEFAULT_MODEL)
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if spec in BUILTIN_MODELS:
        return builtin_path(spec)
    hint = "" if path.suffix else f" (built-in models: {', '.join(BUILTIN_MODELS)})"
    raise UnknownModelError(f"model not found: {spec}{hint}")


def available() -> dict[str, Path]:
    """The built-in models present in this installation."""
    return {name: MODELS_DIR / f for name, f in BUILTIN_MODELS.items() if (MODELS_DIR / f).is_file()}
