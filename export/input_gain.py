"""The quiet-input gain: a stateful model that hears quiet audio as if it were played at a normal level.

A student's confidence depends on the level of what it hears, however wide its gain augmentation: the
two-block ``pitch-small`` lost 0.6 RPA points on the pitch recipe's test renders at a peak of -40 dBFS
against 0 dBFS, on note tails its bins grew unsure of. A microphone at its default settings gives that
kind of level. The quiet-input gain raises such input before the network reads it, inside the ONNX graph,
so every path that runs the file (a stream, a whole clip, another runtime) does the same:

* each frame's level is the natural log of its band powers summed (features compressed as ``ln(x + floor)``,
  compression ``log``, whose floor can be taken off again);
* the reference level is the loudest frame of the last ``window_frames`` frames (this one included): a
  state tensor ``input_level`` carries the levels of the ``window_frames - 1`` frames before the call;
* a frame whose reference level is under ``target_db`` (dB of summed band power, the features' own scale)
  is raised by the difference, at most ``max_boost_db``. The gain applies to the band powers under the
  front end's floor, ``ln((e^f - floor) * G + floor)``, so the features are those of the audio played that
  much louder (up to float rounding). Adding the gain to the log features instead raised the floor with
  it: at -40 dBFS most bands of a note's tail lie under the floor (1e-6 for the pitch models), and that
  version read the quiet renders no better than no gain at all;
* a frame at or above the target keeps its features bit for bit (the graph selects them), so loud input
  and the recipes' metrics are untouched. The gain never cuts;
* the card's level gate goes down to `LEVEL_GATE_DBFS` (-90 dBFS RMS), so the runtime does not call the quiet
  input the gain is there for silence.

The state starts at zero, which stands for the quietest possible frame (digital silence: every band at
the floor), so a stream and a whole clip from the initial state agree. Noise alone is raised like any
quiet sound: on white and pink noise from -70 to -20 dBFS RMS ``pitch-small`` voiced no frame with or
without the gain (the level gate, which reads the audio's own level, still makes silence silent).

Nineteen nodes in front of the network: 0.4-0.9 ms of CPU per second of `pitch-small`'s stream (8-18 us per
two-frame call) on the development VM's AMD EPYC, one thread (``benchmarks/stream_cost.py``, two runs).
`add_input_gain` edits an `onnx.ModelProto` and returns the card that describes it (the ``input_gain``
record and the ``input_level`` state); `add_input_gain_to_file` copies an edgetag file with it, resealed,
after checking it against `input_gain_reference` (this numpy reference of the same arithmetic, in float64)
streamed and in one call. ``edgetag export OLD.onnx -o NEW.onnx --add-input-gain`` runs it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgetag.export.errors import ExportError
from edgetag.runtime.model_card import INPUT_NAME, ModelCard, StateTensor

#: Defaults chosen on the pitch recipe's valid renders by ``training/recipes/pitch/choose_input_gain.py`` (its rule:
#: clean RPA at most 0.1 below no gain, -40 against 0 dBFS within 0.5, noise no worse; then the smallest level
#: difference, the lowest target, the shorter window).
TARGET_DB = 20.0
WINDOW_FRAMES = 100
MAX_BOOST_DB = 40.0
LEVEL_GATE_DBFS = -90.0
"""The card's level gate (dB RMS) for a file with the gain: the runtime's default, -60, cut what the gain raises
(`pitch-small`'s valid renders played at -50 dBFS peak kept 22 % of their voiced decisions at -60, 97 % at -80,
99 % at -90: the highest gate that keeps 98 %, the rule of ``training/recipes/pitch/choose_level_gate.py``,
written before measuring). Digital silence stays
silent; noise alone the models read unvoiced (README, "The quiet-input gain")."""
STATE_NAME = "input_level"
_PREFIX = "input_gain/"


def _ln(db: float) -> float:
    """dB of power -> natural-log units of power."""
    return db * math.log(10.0) / 10.0


def check_settings(card: ModelCard, target_db: float, window_frames: int, max_boost_db: float) -> None:
    """`ExportError` unless ``card`` can take the gain with these settings, saying why."""
    if card.streaming_mode != "stateful":
        raise ExportError(f"the quiet-input gain is for stateful (streaming) models; {card.name} is a "
                          f"{card.streaming_mode} model")
    if card.frontend.compression != "log":
        raise ExportError(f"the quiet-input gain needs features compressed as ln(x + floor) (compression 'log'), whose "
                          f"floor can be taken off; {card.name}'s front end uses {card.frontend.compression!r}")
    if card.input_gain or any(s.name == STATE_NAME for s in card.states):
        raise ExportError(f"{card.name} has a quiet-input gain already (edgetag info shows it): nothing to add")
    if not (math.isfinite(target_db) and -100.0 <= target_db <= 200.0):
        raise ExportError(f"target_db must be a finite level from -100 to 200 dB of band power, got {target_db}")
    if not (isinstance(window_frames, int) and 2 <= window_frames <= 100_000):
        raise ExportError(f"window_frames must be a whole number from 2 to 100000, got {window_frames!r}")
    if not (math.isfinite(max_boost_db) and 0.0 < max_boost_db <= 80.0):
        raise ExportError(f"max_boost_db must be above 0 and at most 80 dB, got {max_boost_db}")


def input_gain_reference(features: np.ndarray, record: dict[str, Any], floor: float,
                         levels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What the graph computes, in float64: ``features`` [frames, n_bins] of one stream after ``levels``
    (its ``input_level`` state without the batch axis, [1, window_frames - 1]; None: the initial zeros)
    -> (the features the network reads, float32; the state after them)."""
    f = np.asarray(features, np.float64)
    window = int(record["window_frames"])
    before = np.zeros(window - 1) if levels is None else np.asarray(levels, np.float64).reshape(-1)
    if not len(f):  # no frames: nothing read, the state as it was
        return f.astype(np.float32), before[None].astype(np.float32)
    power = np.exp(f)
    lowest = math.log(f.shape[1] * floor)  # digital silence: every band at the floor
    level = np.log(power.sum(axis=1)) - lowest
    history = np.concatenate([before, level])
    peak = np.lib.stride_tricks.sliding_window_view(history, window).max(axis=1)
    gain = np.clip(_ln(record["target_db"]) - lowest - peak, 0.0, _ln(record["max_boost_db"]))[:, None]
    boosted = np.log(np.maximum(power - floor, 0.0) * np.exp(gain) + floor)
    out = np.where(gain > 0.0, boosted, f).astype(np.float32)
    return out, history[len(history) - (window - 1):][None].astype(np.float32)


def add_input_gain(model: Any, card: ModelCard, target_db: float = TARGET_DB, window_frames: int = WINDOW_FRAMES,
                   max_boost_db: float = MAX_BOOST_DB) -> ModelCard:
    """Put the quiet-input gain in front of ``model``'s network (an `onnx.ModelProto`, edited in place);
    returns ``card`` with the ``input_gain`` record and the ``input_level`` state (appended)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    check_settings(card, target_db, window_frames, max_boost_db)
    graph = model.graph
    n_bins = card.frontend.n_bins
    floor = float(card.frontend.log_floor)
    lowest = math.log(n_bins * floor)
    p = _PREFIX
    read = p + "features"  # what the network reads from now on
    for node in graph.node:
        node.input[:] = [read if name == INPUT_NAME else name for name in node.input]
    constants = {
        "axis2": np.array([2], np.int64),
        "lowest": np.array(lowest, np.float32),
        "target": np.array(_ln(target_db) - lowest, np.float32),
        "zero": np.array(0.0, np.float32),
        "max_boost": np.array(_ln(max_boost_db), np.float32),
        "floor": np.array(floor, np.float32),
        "row": np.array([0, 1, -1], np.int64),
        "column": np.array([0, -1, 1], np.int64),
        "keep_from": np.array([-(window_frames - 1)], np.int64),
        "keep_to": np.array([np.iinfo(np.int64).max], np.int64),
    }
    for name, value in constants.items():
        graph.initializer.append(numpy_helper.from_array(value, p + name))
    state_in, state_out = StateTensor(STATE_NAME, (1, window_frames - 1)).input_name, f"{STATE_NAME}_out"
    c = {name: p + name for name in constants}
    nodes = [
        helper.make_node("Exp", [INPUT_NAME], [p + "power"]),  # each band's power, plus the floor
        helper.make_node("ReduceSum", [p + "power", c["axis2"]], [p + "total"], keepdims=1),  # [b, t, 1]
        helper.make_node("Log", [p + "total"], [p + "log_total"]),
        helper.make_node("Sub", [p + "log_total", c["lowest"]], [p + "level"]),  # >= 0: 0 is digital silence
        helper.make_node("Reshape", [p + "level", c["row"]], [p + "level_row"]),  # [b, 1, t]: the same memory
        helper.make_node("Concat", [state_in, p + "level_row"], [p + "history"], axis=2),
        helper.make_node("MaxPool", [p + "history"], [p + "peak_row"], kernel_shape=[window_frames], strides=[1]),
        helper.make_node("Slice", [p + "history", c["keep_from"], c["keep_to"], c["axis2"]], [state_out]),
        helper.make_node("Reshape", [p + "peak_row", c["column"]], [p + "peak"]),  # [b, t, 1]
        helper.make_node("Sub", [c["target"], p + "peak"], [p + "wanted"]),
        helper.make_node("Clip", [p + "wanted", c["zero"], c["max_boost"]], [p + "gain"]),
        helper.make_node("Exp", [p + "gain"], [p + "factor"]),
        # ln((e^f - floor) * G + floor): the band powers raised, under a floor that stays where it was
        helper.make_node("Sub", [p + "power", c["floor"]], [p + "signal_or_less"]),
        # >= 0: a feature a rounding below ln(floor) would otherwise make a negative power, whose log is NaN
        helper.make_node("Relu", [p + "signal_or_less"], [p + "signal"]),
        helper.make_node("Mul", [p + "signal", p + "factor"], [p + "raised"]),
        helper.make_node("Add", [p + "raised", c["floor"]], [p + "raised_power"]),
        helper.make_node("Log", [p + "raised_power"], [p + "boosted"]),
        helper.make_node("Greater", [p + "gain", c["zero"]], [p + "is_boosted"]),
        helper.make_node("Where", [p + "is_boosted", p + "boosted", INPUT_NAME], [read]),  # loud frames as they were
    ]
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)  # before the network: the graph stays topologically sorted
    batch = next(v for v in graph.input if v.name == INPUT_NAME).type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_param or "batch"
    graph.input.append(helper.make_tensor_value_info(state_in, TensorProto.FLOAT, [batch_dim, 1, window_frames - 1]))
    graph.output.append(helper.make_tensor_value_info(state_out, TensorProto.FLOAT, [batch_dim, 1, window_frames - 1]))
    onnx.checker.check_model(model)
    record = {"target_db": float(target_db), "window_frames": int(window_frames), "max_boost_db": float(max_boost_db),
              "state": STATE_NAME,
              "what": (f"frames whose loudest of the last {window_frames} frames is under {target_db:g} dB of band "
                       f"power are raised to it (at most {max_boost_db:g} dB) before the network reads them")}
    gate = LEVEL_GATE_DBFS if card.level_gate_dbfs is None else min(card.level_gate_dbfs, LEVEL_GATE_DBFS)
    return dataclasses.replace(card, states=(*card.states, StateTensor(STATE_NAME, (1, window_frames - 1))),
                               input_gain=record, level_gate_dbfs=gate)


def without_input_gain(model: Any, card: ModelCard) -> ModelCard:
    """Take the quiet-input gain out of ``model`` (an `onnx.ModelProto` that `add_input_gain` edited, changed in
    place): the graph the network was before it, and its card without the gain and its state (for choosing the
    gain's settings again, ``training/recipes/pitch/choose_input_gain.py``). The card's level gate stays as
    the gain set it (what it was before is not recorded)."""
    if not card.input_gain:
        return card
    graph = model.graph
    state = StateTensor(card.input_gain["state"], (1, card.input_gain["window_frames"] - 1))
    kept = [node for node in graph.node if not any(name.startswith(_PREFIX) for name in node.output)
            and state.output_name not in node.output]
    del graph.node[:]
    graph.node.extend(kept)
    for node in graph.node:
        node.input[:] = [INPUT_NAME if name == _PREFIX + "features" else name for name in node.input]
    inits = [init for init in graph.initializer if not init.name.startswith(_PREFIX)]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    for values, name in ((graph.input, state.input_name), (graph.output, state.output_name)):
        for i, value in enumerate(values):
            if value.name == name:
                del values[i]
                break
    return dataclasses.replace(card, states=tuple(s for s in card.states if s.name != state.name), input_gain={})


def _check_against_reference(new: Any, old: Any, frames: np.ndarray, tolerance: float) -> float:
    """Largest logit difference between ``new`` (the model with the gain) and ``old`` (without it, on the numpy
    reference's raised features), ``frames`` streamed in uneven calls and in one; `ExportError` past ``tolerance``."""
    from edgetag.runtime.clip import run_chunks

    gained, _ = input_gain_reference(frames, new.card.input_gain, float(new.card.frontend.log_floor))
    want, _ = run_chunks(old, gained, [len(frames)])
    uneven, left = [], len(frames)
    for n in (1, 3, 2, 7, 1, 50, 5):  # then the rest in one call
        if left:
            uneven.append(min(n, left))
            left -= uneven[-1]
    uneven += [left] if left else []
    worst = max(float(np.abs(run_chunks(new, frames, chunks)[0] - want).max()) for chunks in ([len(frames)], uneven))
    if not worst <= tolerance:
        raise ExportError(f"the graph with the quiet-input gain differs from the numpy reference by {worst:.3g} "
                          f"in logits (tolerance {tolerance:g}): not written")
    return worst


def _fp32_reference(path: Path, card: ModelCard, precision: str, frames: np.ndarray) -> np.ndarray:
    """The test vector's reference scores for the int8 or fp16 file to be written at ``path`` (``X.int8.onnx``):
    the scores of its fp32 sibling ``X.onnx`` on ``frames``, which must be the same network (weights hash) with
    the same gain."""
    from edgetag.runtime.formats import FORMATS
    from edgetag.runtime.model import load_model
    from edgetag.runtime.verify import stream_scores

    suffix = FORMATS[precision].suffix if precision in FORMATS else f".{precision}.onnx"
    how = (f"an {precision} file's test vector starts quietly enough for the gain to raise it, so its reference "
           f"scores must come from the fp32 file with the gain: give the fp32 file X.onnx the gain first, then write "
           f"this one beside it as X{suffix}")
    if not path.name.endswith(suffix):
        raise ExportError(f"{how} (the output {path.name} is not named X{suffix})")
    fp32 = path.with_name(path.name[: -len(suffix)] + FORMATS["fp32"].suffix)
    try:
        other = load_model(fp32)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{how} ({fp32}: {exc})") from None
    ours, theirs = (c.provenance.get("export", {}).get("weights_hash") for c in (card, other.card))
    if not ours or ours != theirs:
        raise ExportError(f"{how} ({fp32} is not the same network: weights hash {theirs or 'none'} against "
                          f"{ours or 'none'})")
    if other.card.input_gain != card.input_gain:
        raise ExportError(f"{how} ({fp32} has {'another gain' if other.card.input_gain else 'no gain'})")
    return stream_scores(other, frames)  # on this file's own frames (an fp32 file's vector may hold others)


def add_input_gain_to_file(source: str | Path, path: str | Path, target_db: float = TARGET_DB,
                           window_frames: int = WINDOW_FRAMES, max_boost_db: float = MAX_BOOST_DB,
                           tolerance: float = 1e-3) -> tuple[ModelCard, float]:
    """Copy an edgetag ONNX file (fp32 or int8) to ``path`` with the quiet-input gain, resealed; returns its
    card and the largest logit difference to the reference on quiet and loud frames.

    Checked before writing: the new graph matches `input_gain_reference` followed by the original graph,
    streamed in uneven calls and in one, on the file's test vector frames and on them played 40 dB quieter.
    The test vector keeps its frames. Its reference scores stay where the gain leaves the frames as they
    are; where it raises any (a vector that starts quietly), they are the fp32 model's with the gain: this
    file's own for an fp32 file, and for an int8 file those of ``path``'s fp32 sibling (``X.onnx`` beside
    ``X.int8.onnx``), which must have been given the gain first. ``path`` may be ``source`` (atomic write)."""
    from edgetag.export.model_file import _ort_session, read_sealed_file
    from edgetag.runtime.model import OnnxModel
    from edgetag.runtime.sealing import seal

    if Path(path).is_dir():
        raise ExportError(f"-o {path} is a folder: name the file to write (e.g. {Path(path) / Path(source).name})")
    sealed = read_sealed_file(source)
    original_bytes, model, original, frames = sealed.data, sealed.model, sealed.card, sealed.frames
    reference: np.ndarray | None = sealed.reference
    card = add_input_gain(model, original, target_db, window_frames, max_boost_db)
    floor = float(card.frontend.log_floor)
    gained, _ = input_gain_reference(frames, card.input_gain, floor)
    if not np.array_equal(gained, frames):  # the vector's reference scores no longer hold
        if sealed.precision == "fp32":
            reference = None  # this file's own, as the exporter records an fp32 file's
        else:
            reference = _fp32_reference(Path(path), card, sealed.precision, frames)
    # quiet frames: the test vector 40 dB down (in band power, exact for these features)
    quiet = np.log(np.maximum(np.exp(frames.astype(np.float64)) - floor, 0.0) * 1e-4 + floor).astype(np.float32)
    new_bytes = model.SerializeToString()
    with_gain = OnnxModel.from_session(_ort_session(new_bytes), card)  # each session opened once, for both checks
    without = OnnxModel.from_session(_ort_session(original_bytes), original)
    worst = max(_check_against_reference(with_gain, without, x, tolerance) for x in (frames, quiet))
    return seal(model, card, path, frames, precision=sealed.precision, reference_scores=reference), worst
