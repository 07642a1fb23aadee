"""The C API as a user gets it: configure without Python, build, install into a prefix, build the C
example against the installed package, run it on WAV files, compare with Python.

``cmake -S . -DEDGETAG_BUILD_PYTHON=OFF`` must configure with pybind11 and Python's development
files out of reach; the install holds the headers, libedgetag.a and libedgetag.so, a CMake package
and a pkg-config file, both at pyproject's version; the example (cpp_ext/examples/edgetag_features.c),
built through find_package (shared and static) and through pkg-config, writes frames bit-identical
to `edgetag.runtime.frontend.compute_features`. The shared library is also driven through ctypes
with every preset and the built-in models' front ends. Skips without cmake or a C/C++ compiler,
unless EDGETAG_REQUIRE_CMAKE=1 (CI), where that is a failure.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

import edgetag
from edgetag.runtime.frontend import PRESETS, FrontendConfig, compute_features

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "cpp_ext" / "examples"


def _missing(what: str) -> None:
    if os.environ.get("EDGETAG_REQUIRE_CMAKE") == "1":
        pytest.fail(f"{what}, and EDGETAG_REQUIRE_CMAKE=1 says the C API test must run")
    pytest.skip(what)


def _compiler(env: str, names: tuple[str, ...]) -> str | None:
    for name in ((os.environ[env],) if os.environ.get(env) else ()) + names:
        if shutil.which(name):
            return shutil.which(name)
    return None


def _run(cmd: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C library built without Python and installed into a fresh prefix."""
    cmake = shutil.which("cmake")
    if cmake is None:
        _missing("cmake not found on PATH")
    if _compiler("CC", ("cc", "gcc", "clang")) is None or _compiler("CXX", ("c++", "g++", "clang++")) is None:
        _missing("no C and C++ compiler on PATH")
    work = tmp_path_factory.mktemp("capi")
    build, prefix = work / "build", work / "prefix"
    # pybind11 and Python's headers are made unfindable: the C library must not need them.
    _run([cmake, "-S", REPO, "-B", build, "-DEDGETAG_BUILD_PYTHON=OFF", "-DCMAKE_BUILD_TYPE=Release",
          "-DCMAKE_DISABLE_FIND_PACKAGE_pybind11=ON", "-DCMAKE_DISABLE_FIND_PACKAGE_Python=ON"])
    _run([cmake, "--build", build, "--config", "Release", "-j2"])
    _run([cmake, "--install", build, "--prefix", prefix, "--config", "Release"])
    try:  # under qemu-user (.ci/aarch64) the PATH's cmake and compilers build for the host, not for this Python
        ctypes.CDLL(str(_libdir(prefix) / "libedgetag.so"))
    except OSError as exc:
        pytest.skip(f"the C library built here does not load into this Python ({exc}): another architecture?")
    return prefix


def _libdir(prefix: Path) -> Path:
    return next(prefix.rglob("libedgetag.a")).parent


def _signal(rate: int, seconds: float = 1.3, seed: int = 0) -> np.ndarray:
    """A chirp plus noise, float32 in [-0.7, 0.7]; 1.3 s is no whole number of the example's 4096-sample blocks."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * (200 * t + 1500 * t**2)) + 0.2 * rng.uniform(-1, 1, t.size)
    return x.astype(np.float32)


def _write_wav(path: Path, x: np.ndarray, rate: int) -> Path:
    """int16 through the standard library's wave module; float32 through soundfile (IEEE float WAV)."""
    if x.dtype == np.int16:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1 if x.ndim == 1 else x.shape[1])
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(x.astype("<i2").tobytes())
    else:
        sf = pytest.importorskip("soundfile")
        sf.write(path, x, rate, subtype="FLOAT")
    return path


def _configs() -> dict[str, FrontendConfig]:
    """Every preset and the built-in models' front ends (what a C program would read from the ONNX metadata)."""
    out = dict(PRESETS)
    pytest.importorskip("onnxruntime")
    for name in ("music-tags", "pitch"):
        out[f"model:{name}"] = edgetag.load(name).card.frontend
    return out


# ---------------------------------------------------------------- the install
def test_install_tree_holds_headers_libraries_and_package_files(prefix: Path) -> None:
    libdir = _libdir(prefix)
    assert (prefix / "include" / "edgetag" / "c_api.h").is_file()
    assert (libdir / "libedgetag.a").is_file() and (libdir / "libedgetag.so").exists()
    config_dir = libdir / "cmake" / "edgetag"
    for name in ("edgetagConfig.cmake", "edgetagConfigVersion.cmake", "edgetagTargets.cmake"):
        assert (config_dir / name).is_file(), name
    assert f'"{edgetag.__version__}"' in (config_dir / "edgetagConfigVersion.cmake").read_text()
    pc = (libdir / "pkgconfig" / "edgetag.pc").read_text()
    assert f"Version: {edgetag.__version__}\n" in pc and "-ledgetag" in pc
    assert "${pcfiledir}" in pc  # relocatable: found wherever the prefix is moved
    # only the C API leaves the shared library (the C++ core is hidden)
    nm = shutil.which("nm")
    if nm:
        symbols = subprocess.run([nm, "-D", "--defined-only", str(libdir / "libedgetag.so")],
                                 capture_output=True, text=True).stdout.split("\n")
        exported = {line.split()[-1] for line in symbols if " T " in line}
        assert exported == {f"edgetag_{n}" for n in (
            "frontend_create", "frontend_num_bins", "frontend_sample_rate", "frontend_frames_for_push",
            "frontend_push_f32", "frontend_push_s16", "frontend_reset", "frontend_destroy", "last_error")}


# ---------------------------------------------------------------- the example
@pytest.fixture(scope="module", params=["find_package", "find_package-static", "pkg-config"])
def example(request: pytest.FixtureRequest, prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C example built against the installed package, three ways."""
    out = tmp_path_factory.mktemp(request.param)
    if request.param == "pkg-config":
        pkg_config, cc = shutil.which("pkg-config"), _compiler("CC", ("cc", "gcc", "clang"))
        if pkg_config is None:
            pytest.skip("pkg-config not found")
        env = {**os.environ, "PKG_CONFIG_PATH": str(_libdir(prefix) / "pkgconfig")}
        flags = _run([pkg_config, "--cflags", "--libs", "edgetag"], env=env).stdout.split()
        binary = out / "edgetag_features"
        _run([cc, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", EXAMPLE / "edgetag_features.c",
              "-o", binary, *flags, f"-Wl,-rpath,{_libdir(prefix)}"])
        return binary
    static = "ON" if request.param.endswith("static") else "OFF"
    cmake = shutil.which("cmake")
    _run([cmake, "-S", EXAMPLE, "-B", out, f"-DCMAKE_PREFIX_PATH={prefix}", f"-DEDGETAG_EXAMPLE_STATIC={static}",
          "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_C_FLAGS=-Werror"])
    _run([cmake, "--build", out, "--config", "Release"])
    binary = next(p for p in out.rglob("edgetag_features") if p.is_file())
    if static == "ON" and shutil.which("ldd"):  # libedgetag is inside the program
        assert "libedgetag" not in subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    return binary


@pytest.mark.parametrize(("name", "sample_type"), [
    ("model:music-tags", "int16"), ("model:pitch", "float32"), ("kaldi", "int16"), ("librosa", "float32"),
])
def test_example_frames_are_bit_identical_to_compute_features(example: Path, name: str, sample_type: str,
                                                               tmp_path: Path) -> None:
    config = _configs()[name]
    x = _signal(config.sample_rate)
    if sample_type == "int16":
        x = np.round(x * 32767).astype(np.int16)
    wav = _write_wav(tmp_path / "in.wav", x, config.sample_rate)
    cfg = tmp_path / "frontend.json"
    cfg.write_text(config.to_json(indent=2))  # the card's frontend object, as Python writes it
    out = tmp_path / "frames.f32"
    done = _run([example, cfg, wav, out], timeout=120)
    expected = compute_features(x, config)
    assert done.stdout.strip() == f"{len(expected)} frames x {config.n_bins} bins -> {out}"
    frames = np.fromfile(out, np.float32).reshape(-1, config.n_bins)
    assert frames.shape == expected.shape and len(frames) > 10
    np.testing.assert_array_equal(frames.view(np.uint32), expected.view(np.uint32))  # bit for bit


def test_example_reports_bad_input(example: Path, tmp_path: Path) -> None:
    config = PRESETS["default"]
    cfg = tmp_path / "frontend.json"

    def run(wav: Path, text: str | None = None) -> subprocess.CompletedProcess[str]:
        cfg.write_text(text or config.to_json())
        return subprocess.run([str(example), str(cfg), str(wav), str(tmp_path / "o.f32")],
                              capture_output=True, text=True, timeout=60)

    pcm = np.round(_signal(16000) * 32767).astype(np.int16)
    good = _write_wav(tmp_path / "good.wav", pcm, 16000)
    bad_config = json.loads(config.to_json())
    bad_config["fmax"] = 9000.0
    done = run(good, json.dumps(bad_config))
    assert done.returncode == 1 and "invalid front-end config: fmax is above the Nyquist frequency" in done.stderr
    done = run(_write_wav(tmp_path / "stereo.wav", np.stack([pcm, pcm], axis=1), 16000))
    assert done.returncode == 1 and "2 channel(s)" in done.stderr
    done = run(_write_wav(tmp_path / "44k.wav", pcm, 44100))
    assert done.returncode == 1 and "at 44100 Hz, the front end takes 16000 Hz" in done.stderr
    x = _signal(16000)
    x[5000] = np.nan
    done = run(_write_wav(tmp_path / "nan.wav", x, 16000))
    assert done.returncode == 1 and "edgetag_frontend_push_f32: sample 904 of the pushed chunk is NaN" in done.stderr
    assert subprocess.run([str(example)], capture_output=True, timeout=60).returncode == 2


# ---------------------------------------------------------------- through ctypes
@pytest.fixture(scope="module")
def lib(prefix: Path) -> ctypes.CDLL:
    c = ctypes.CDLL(str(_libdir(prefix) / "libedgetag.so"))
    c.edgetag_frontend_create.restype = ctypes.c_void_p
    c.edgetag_frontend_create.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    for name in ("edgetag_frontend_num_bins", "edgetag_frontend_sample_rate"):
        getattr(c, name).argtypes = [ctypes.c_void_p]
    c.edgetag_frontend_frames_for_push.restype = ctypes.c_long
    c.edgetag_frontend_frames_for_push.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    for name in ("edgetag_frontend_push_f32", "edgetag_frontend_push_s16"):
        getattr(c, name).restype = ctypes.c_long
        getattr(c, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                     ctypes.c_size_t]
    c.edgetag_frontend_reset.argtypes = c.edgetag_frontend_destroy.argtypes = [ctypes.c_void_p]
    c.edgetag_last_error.restype = ctypes.c_char_p
    return c


def _push_all(lib: ctypes.CDLL, fe: int, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    push = lib.edgetag_frontend_push_s16 if x.dtype == np.int16 else lib.edgetag_frontend_push_f32
    bins = lib.edgetag_frontend_num_bins(fe)
    frames, i, k = [], 0, 0
    while i < len(x):
        chunk = np.ascontiguousarray(x[i : i + sizes[k % len(sizes)]])
        want = lib.edgetag_frontend_frames_for_push(fe, len(chunk))
        out = np.empty((want, bins), np.float32)
        got = push(fe, chunk.ctypes.data, len(chunk), out.ctypes.data, want)
        assert got == want, lib.edgetag_last_error()
        frames.append(out)
        i, k = i + len(chunk), k + 1
    return np.concatenate(frames)


@pytest.mark.parametrize("name", list(PRESETS) + ["model:music-tags", "model:pitch"])
def test_shared_library_equals_python_for_every_config(lib: ctypes.CDLL, name: str) -> None:
    config = _configs()[name]
    err = ctypes.create_string_buffer(256)
    fe = lib.edgetag_frontend_create(config.to_json().encode(), err, len(err))
    assert fe, err.value.decode()
    try:
        assert lib.edgetag_frontend_num_bins(fe) == config.n_bins
        assert lib.edgetag_frontend_sample_rate(fe) == config.sample_rate
        x = _signal(config.sample_rate, seconds=0.7, seed=3)
        for samples in (x, np.round(x * 32767).astype(np.int16)):
            got = _push_all(lib, fe, samples, [1, 7, 160, 4096, 333])
            lib.edgetag_frontend_reset(fe)
            np.testing.assert_array_equal(got.view(np.uint32), compute_features(samples, config).view(np.uint32))
    finally:
        lib.edgetag_frontend_destroy(fe)


@pytest.mark.parametrize(("change", "message"), [
    ({"n_fft": 500}, "n_fft must be a power of two"),
    ({"hop_length": 0}, "hop_length must be at least 1"),
    ({"window": "blackman"}, "window must be one of hann, hamming, rectangular"),
    ({"n_bins": 300, "fmin": 0.0}, "band"),
    ({"n_bins": 64.0}, "n_bins must be an integer"),
    ({"dither": 0.1}, "unknown field(s) dither"),
])
def test_configs_python_refuses_the_c_api_refuses(lib: ctypes.CDLL, change: dict, message: str) -> None:
    from edgetag.runtime.frontend import FrontendConfigError

    data = {**PRESETS["default"].to_dict(), **change}
    with pytest.raises((FrontendConfigError, TypeError)):
        FrontendConfig.from_dict(data)
    err = ctypes.create_string_buffer(256)
    assert not lib.edgetag_frontend_create(json.dumps(data).encode(), err, len(err))
    assert message in err.value.decode() and err.value == lib.edgetag_last_error()
