"""A virtual microphone for tests and benchmarks (DESIGN.md, "A virtual microphone for tests").

Shared by ``tests/`` (imported there as ``virtual_mic``) and by ``edgetag bench``
(the capture-to-decision row); needs only the standard library and the
PulseAudio command-line tools, never torch or the runtime.

`VirtualMic` starts a private PulseAudio daemon (own runtime directory and
socket, anonymous auth) with a 16 kHz mono s16le null sink whose monitor is
the default source, keeps a ``pacat --record --latency-msec=10`` attached to
the monitor (without it the first stream of each process gets its audio 0.5
to 2 s late), and plays WAV files into the sink with ``paplay``. sounddevice
then records the sink through the ALSA ``pulse`` device. Everything it
starts is stopped by process id.

    with VirtualMic() as mic:           # raises VirtualMicUnavailable with a reason
        env = mic.env                   # PULSE_SERVER etc. for child processes
        mic.play("known.wav")           # returns the paplay Popen
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SINK = "edgetag_vmic"


class VirtualMicUnavailable(RuntimeError):
    """PulseAudio cannot be started here; the message says why (tests skip with it)."""


def missing_tools() -> list[str]:
    return [tool for tool in ("pulseaudio", "pactl", "pacat", "paplay") if shutil.which(tool) is None]


class VirtualMic:
    def __init__(self, rate: int = 16000) -> None:
        self.rate = rate
        self.dir: Path | None = None
        self.env: dict[str, str] = {}
        self.daemon_pid: int | None = None
        self._children: list[subprocess.Popen] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> VirtualMic:
        missing = missing_tools()
        if missing:
            raise VirtualMicUnavailable(
                f"{', '.join(missing)} not installed (apt-get install pulseaudio pulseaudio-utils "
                "libasound2-plugins libportaudio2)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="edgetag-vmic-"))
        runtime = self.dir / "run"
        runtime.mkdir()
        socket = runtime / "native"
        env = dict(os.environ)
        env.update(
            XDG_RUNTIME_DIR=str(runtime),
            PULSE_RUNTIME_PATH=str(runtime),
            PULSE_STATE_PATH=str(self.dir / "state"),
            PULSE_CONFIG_PATH=str(self.dir / "config"),
            HOME=str(self.dir),  # keeps the cookie and config out of the real home
            PULSE_SERVER=f"unix:{socket}",
        )
        env.pop("PULSE_SINK", None)
        env.pop("PULSE_SOURCE", None)
        self.env = env
        cmd = [
            "pulseaudio", "--daemonize=yes", "-n", "--exit-idle-time=-1", "--disallow-exit",
            "--use-pid-file=yes", "--log-target=file:" + str(self.dir / "pulse.log"),
            f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1",
            f"--load=module-null-sink sink_name={SINK} rate={self.rate} channels=1 format=s16le",
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=20)
        if proc.returncode != 0:
            log = self._log_tail()
            self.stop()
            raise VirtualMicUnavailable(f"pulseaudio did not start: {proc.stderr.strip()} {log}")
        self.daemon_pid = self._read_pid(runtime)
        deadline = time.monotonic() + 10
        while True:
            info = subprocess.run(["pactl", "info"], env=env, capture_output=True, text=True, timeout=10)
            if info.returncode == 0:
                break
            if time.monotonic() > deadline:
                log = self._log_tail()
                self.stop()
                raise VirtualMicUnavailable(f"pulseaudio is not answering: {info.stderr.strip()} {log}")
            time.sleep(0.1)
        for args in (["set-default-sink", SINK], ["set-default-source", f"{SINK}.monitor"]):
            subprocess.run(["pactl", *args], env=env, check=True, capture_output=True, timeout=10)
        keepalive = subprocess.Popen(
            ["pacat", "--record", "--latency-msec=10", f"--device={SINK}.monitor", "/dev/null"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._children.append(keepalive)
        time.sleep(0.3)
        if keepalive.poll() is not None:
            self.stop()
            raise VirtualMicUnavailable("pacat --record on the null sink's monitor exited at once")
        return self

    def _read_pid(self, runtime: Path) -> int | None:
        for _ in range(50):
            for candidate in (runtime / "pid", runtime / "pulse" / "pid"):
                if candidate.exists():
                    try:
                        return int(candidate.read_text().split()[0])
                    except (ValueError, IndexError):
                        pass
            time.sleep(0.05)
        return None

    def _log_tail(self) -> str:
        log = self.dir / "pulse.log" if self.dir else None
        if log and log.exists():
            return "| log: " + " / ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
        return ""

    def play(self, wav: str | os.PathLike[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            ["paplay", f"--device={SINK}", str(wav)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._children.append(proc)
        return proc

    def stop(self) -> None:
        for child in self._children:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(timeout=5)
        self._children.clear()
        if self.daemon_pid is not None:
            try:
                os.kill(self.daemon_pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(self.daemon_pid, 0)
                    time.sleep(0.05)
                os.kill(self.daemon_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.daemon_pid = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> VirtualMic:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
