"""Fetch real music and speech from Debian's archive and write a manifest.

    python -m edgetag.training.prepare_audio --out /work/data/audio
    python -m edgetag.training.prepare_audio --out DIR --packages asc-music drascula-music --dry-run

For each package it runs ``apt-get download PKG`` into a cache folder and
``dpkg -x`` into ``OUT/packages/PKG`` (nothing is installed, no root
needed), unpacks the audio inside game archives (``.pk3``), finds the audio files, reads their headers (and with ``--verify``
decodes them fully), and writes ``OUT/manifest.jsonl`` (or ``.csv``) in the
format of `edgetag.training.manifest_format`, with paths relative to ``OUT``, plus
``OUT/summary.json`` with files, hours, formats and sample rates per
package.

Splits are assigned by *package*: ``--test-packages`` and
``--valid-packages`` are held out whole, so evaluation uses music the
student never heard, from other composers and productions. The exception is
``--hash-split`` (by default the one speech package, asterisk's prompts,
so that every split has speech): its files are split 80/10/10 by a hash of
their path, which is stable but leaks the speaker across splits.

Labels (vocabulary ``music``, ``speech``, ``sound_effect``) come from what a
package is: game soundtracks are ``music`` with ``speech`` *missing* (a song
might have vocals; nobody checked) and ``sound_effect`` negative; asterisk
prompts are ``speech``; colobot's ``sounds/`` folder is ``sound_effect``;
games' data packages (`MUSIC_IN_GAME_DATA`) give only their soundtrack folder.
Packages not in the table get every label missing (``missing: *``).

Resumable: a package already extracted (marker file present) is neither
downloaded nor extracted again, and the manifest is rebuilt from what is on
disk. Duplicate files (same bytes) are listed once. The data never belongs
in the repository: point ``--out`` outside the checkout.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from edgetag.runtime.audio import AudioError, audio_info, load_audio
from edgetag.training.data import write_manifest
from edgetag.training.manifest_entry import ManifestEntry

MUSIC_PACKAGES = (
    "wesnoth-1.16-music",
    "warzone2100-music",
    "ufoai-music",
    "nexuiz-music",
    "planetblupi-music-ogg",
    "colobot-common-sounds",
    "drascula-music",
    "asc-music",
    "singularity-music",
    "hyperrogue-music",
)
#: Games' data packages whose soundtrack sits beside sound effects and voices:
#: (package, fnmatch pattern of the soundtrack's files); everything else in
#: them is skipped. They widen the music beyond the soundtrack packages above
#: (more composers and genres: rock, chiptune, folk, orchestral, electronic).
MUSIC_IN_GAME_DATA: dict[str, str] = {
    "hedgewars-data": "*/Data/Music/*",
    "widelands-data": "*/data/music/*",
    "supertux-data": "*/supertux2/music/*",
    "flare-game": "*/fantasycore/music/*",
    "freedroidrpg-data": "*/data/sound/music/*",
    "warmux-data": "*/warmux/music/*",
    "openclonk-data": "*/Music.ocg/*",
    "megaglest-data": "*/music/*",
    "extremetuxracer-data": "*/etr/music/*",
    "xmoto-data": "*/Textures/Musics/*",
    "frozen-bubble-data": "*/snd/*zik*",
    "btanks-data": "*/data/tunes/*",
    # Held out (DEFAULT_TEST_PACKAGES, DEFAULT_VALID_PACKAGES): more games, so that
    # no single track decides a tag in evaluation.
    "naev-data": "*/naev/dat/snd/music/*",
    "marsshooter-data": "*/marsshooter/audio/music/*",
    "freecol": "*/freecol/default/resources/music/*",
    "lordsawar-data": "*/lordsawar/music/*",
    "lincity-ng-data": "*/lincity-ng/music/*",
    "gigalomania-data": "*/gigalomania/music/*",
    # Band music, held out: Frets on Fire's song packs (metal by Muldjord, CC BY-SA 3.0; rock and
    # metal by Sectoid, MIT-style), 8 songs. Each song is stems; song.ogg is the band without the
    # lead guitar (the game plays guitar.ogg only while the player hits the notes).
    "fretsonfire-songs-muldjord": "*/song.ogg",
    "fretsonfire-songs-sectoid": "*/song.ogg",
}
SPEECH_PACKAGES = ("asterisk-core-sounds-en-wav",)
DEFAULT_PACKAGES = MUSIC_PACKAGES + tuple(MUSIC_IN_GAME_DATA) + SPEECH_PACKAGES
#: Held-out packages. The six added later (sorted by hours of music) alternate
#: test, valid, test, ... by size alone, a rule fixed before any model saw them.
#: The two Frets on Fire song packs (0.45 h of band music, the only rock/metal band
#: recordings found in the archive) are both test: a genre the game music lacks.
DEFAULT_TEST_PACKAGES = ("drascula-music", "planetblupi-music-ogg", "naev-data", "freecol", "lincity-ng-data",
                         "fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid")
DEFAULT_VALID_PACKAGES = ("asc-music", "marsshooter-data", "lordsawar-data", "gigalomania-data")
DEFAULT_HASH_SPLIT = SPEECH_PACKAGES

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
MARKER = ".edgetag-extracted"

# Label states per kind of content: 1 positive, 0 negative, None missing.
MUSIC = {"music": 1, "speech": None, "sound_effect": 0}
SPEECH = {"speech": 1, "music": 0, "sound_effect": 0}
SOUND_EFFECT = {"sound_effect": 1, "music": 0, "speech": None}
SKIP = None

#: Per package, (fnmatch pattern on the path inside the package, labels or
#: SKIP); the first matching rule wins. Unlisted packages: all labels missing.
PACKAGE_RULES: dict[str, list[tuple[str, dict[str, int | None] | None]]] = {
    **{p: [("*", MUSIC)] for p in MUSIC_PACKAGES},
    "colobot-common-sounds": [("*/music/*", MUSIC), ("*/sounds/*", SOUND_EFFECT), ("*", SKIP)],
    **{p: [(pattern, MUSIC), ("*", SKIP)] for p, pattern in MUSIC_IN_GAME_DATA.items()},
    # Silence files are not speech; the rest are spoken prompts.
    "asterisk-core-sounds-en-wav": [("*/silence/*", SKIP), ("*beep*", SKIP), ("*", SPEECH)],
}


class PrepareError(RuntimeError):
    """A problem that stops the whole run (missing tools, bad arguments)."""


@dataclass
class PackageResult:
    """What one package contributed."""

    name: str
    split: str
    status: str = "pending"
    version: str = ""
    files: int = 0
    seconds: float = 0.0
    formats: Counter[str] = field(default_factory=Counter)
    sample_rates: Counter[int] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "status": self.status,
            "version": self.version,
            "files": self.files,
            "hours": round(self.seconds / 3600, 4),
            "formats": dict(self.formats),
            "sample_rates": {str(k): v for k, v in sorted(self.sample_rates.items())},
            "skipped": dict(self.skipped),
            "error": self.error,
        }


def _require_tools() -> None:
    missing = [t for t in ("apt-get", "dpkg", "apt-cache") if shutil.which(t) is None]
    if missing:
        raise PrepareError(
            f"{', '.join(missing)} not found on PATH: this script fetches audio from the Debian "
            "archive with `apt-get download` and `dpkg -x`, so it needs a Debian or Ubuntu system "
            "(nothing is installed, root is not needed)"
        )


def _run(cmd: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False)


def package_download_size(name: str) -> tuple[str, int] | None:
    """(version, bytes) of the candidate package from ``apt-cache show``, or None."""
    proc = _run(["apt-cache", "show", "--no-all-versions", name])
    if proc.returncode != 0:
        return None
    version, size = "", -1
    for line in proc.stdout.splitlines():
        if line.startswith("Version:") and not version:
            version = line.split(":", 1)[1].strip()
        elif line.startswith("Size:") and size < 0:
            size = int(line.split(":", 1)[1].strip())
    return (version, size) if size >= 0 else None


def fetch_package(name: str, out: Path, cache: Path, keep_debs: bool) -> tuple[Path, str]:
    """Download and extract one package unless already done; returns (dir, version)."""
    dest = out / "packages" / name
    marker = dest / MARKER
    if marker.exists():
        unpack_archives(dest)
        return dest, marker.read_text().strip()
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{name}_*.deb"))
    if not debs:
        proc = _run(["apt-get", "download", name], cwd=cache)
        debs = sorted(cache.glob(f"{name}_*.deb"))
        if proc.returncode != 0 or not debs:
            hint = " (run `apt-get update` if the package lists are stale)" if "Unable to locate" in proc.stderr else ""
            raise RuntimeError(f"apt-get download {name} failed{hint}: {proc.stderr.strip()[-500:]}")
    deb = debs[-1]
    # Extract into a temporary folder and rename, so an interrupted run never
    # leaves a half-extracted package that looks complete.
    partial = out / "packages" / f".{name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    proc = _run(["dpkg", "-x", str(deb), str(partial)])
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeError(f"dpkg -x {deb.name} failed: {proc.stderr.strip()[-500:]}")
    version = deb.name[len(name) + 1 :].removesuffix(".deb")
    (partial / MARKER).write_text(version + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
    if not keep_debs:
        deb.unlink()
    unpack_archives(dest)
    return dest, version


ARCHIVE_SUFFIXES = (".pk3", ".zip")
ARCHIVES_DIR = "_archives"


def unpack_archives(package_dir: Path) -> int:
    """Extract the audio members of game archives (Quake-style ``.pk3`` zips, as
    ufoai-music and nexuiz-music ship their music) into
    ``package_dir/_archives/ARCHIVE/``; returns the files written.

    Done once per archive (a marker file, written last, so an interrupted unpack
    is redone). Member names that are absolute or climb out with ``..`` are
    refused rather than followed."""
    written = 0
    for archive in sorted(p for p in package_dir.rglob("*") if p.suffix.lower() in ARCHIVE_SUFFIXES and p.is_file()
                          and ARCHIVES_DIR not in p.relative_to(package_dir).parts and not p.is_symlink()):
        dest = package_dir / ARCHIVES_DIR / archive.stem
        done = dest / MARKER
        if done.exists():
            continue
        try:
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    member = PurePosixPath(info.filename)
                    if info.is_dir() or member.suffix.lower() not in AUDIO_SUFFIXES:
                        continue
                    if member.is_absolute() or ".." in member.parts:
                        raise RuntimeError(f"{archive.name}: member {info.filename!r} escapes the archive")
                    target = dest.joinpath(*member.parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    written += 1
        except zipfile.BadZipFile as e:
            raise RuntimeError(f"{archive}: not a readable zip archive ({e})") from e
        dest.mkdir(parents=True, exist_ok=True)
        done.write_text(archive.name + "\n")
    return written


def find_audio(package_dir: Path) -> list[Path]:
    """Regular audio files under ``package_dir``, sorted; symlinks are skipped
    (Debian packages link duplicates, and a link could point anywhere)."""
    found = []
    for dirpath, _dirs, files in os.walk(package_dir):
        for fn in files:
            p = Path(dirpath) / fn
            if p.suffix.lower() in AUDIO_SUFFIXES and not p.is_symlink():
                found.append(p)
    return sorted(found)


def _rule_for(package: str, inner_path: str) -> tuple[bool, dict[str, int | None] | None]:
    """(known package?, label states or None to skip the file)."""
    rules = PACKAGE_RULES.get(package)
    if rules is None:
        return False, {}
    for pattern, labels in rules:
        if fnmatch.fnmatch(inner_path, pattern):
            return True, labels
    return True, SKIP


def _hash_split(rel: str) -> str:
    """Stable 80/10/10 split from the path."""
    bucket = int(hashlib.sha256(rel.encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare(
    out: Path,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    *,
    test_packages: Sequence[str] = DEFAULT_TEST_PACKAGES,
    valid_packages: Sequence[str] = DEFAULT_VALID_PACKAGES,
    hash_split: Sequence[str] = DEFAULT_HASH_SPLIT,
    max_hours: float | None = None,
    cache: Path | None = None,
    keep_debs: bool = False,
    verify: bool = False,
    manifest_name: str = "manifest.jsonl",
    progress: bool = True,
) -> tuple[Path, list[PackageResult]]:
    """Fetch ``packages`` into ``out`` and write the manifest; see the module doc."""
    from tqdm import tqdm

    _require_tools()
    overlap = set(test_packages) & set(valid_packages)
    if overlap:
        raise PrepareError(f"packages both in --test-packages and --valid-packages: {sorted(overlap)}")
    out = out.resolve()
    cache = (cache or out / "debs").resolve()
    out.mkdir(parents=True, exist_ok=True)

    results: list[PackageResult] = []
    listing = _Listing(out=out, max_seconds=None if max_hours is None else max_hours * 3600, verify=verify,
                       warn=lambda message: tqdm.write(message, file=sys.stderr))
    bar = tqdm(packages, desc="packages", unit="pkg", disable=not progress)
    for name in bar:
        res = PackageResult(name=name, split=_package_split(name, test_packages, valid_packages, hash_split))
        results.append(res)
        if listing.full():
            res.status = "max-hours"
            continue
        bar.set_postfix_str(name)
        try:
            pkg_dir, res.version = fetch_package(name, out, cache, keep_debs)
        except RuntimeError as e:
            res.status, res.error = "failed", str(e)
            tqdm.write(f"error: {e}", file=sys.stderr)
            continue
        res.status = "ok"
        for path in tqdm(find_audio(pkg_dir), desc=f"  {name}", unit="file", leave=False, disable=not progress):
            listing.add(path, pkg_dir, res)
    bar.close()

    manifest_path = write_manifest(
        out / manifest_name, listing.entries,
        extra_columns=("package", "duration", "sample_rate", "channels", "format"),
    )
    _write_summary(out, manifest_path, listing, results)
    return manifest_path, results


def _package_split(name: str, test_packages: Sequence[str], valid_packages: Sequence[str],
                   hash_split: Sequence[str]) -> str:
    """The package's split: ``hash`` (per file, see `_hash_split`), ``test``, ``valid`` or ``train``."""
    return (
        "hash" if name in hash_split
        else "test" if name in test_packages
        else "valid" if name in valid_packages
        else "train"
    )


@dataclass
class _Listing:
    """The manifest entries listed so far, across packages: each file's bytes listed once, up to
    ``max_seconds`` of audio in all (None: no limit)."""

    out: Path
    max_seconds: float | None
    verify: bool
    warn: Callable[[str], None]
    entries: list[ManifestEntry] = field(default_factory=list)
    seen_digests: dict[str, str] = field(default_factory=dict)
    total_seconds: float = 0.0

    def full(self) -> bool:
        """Whether ``--max-hours`` of audio are listed."""
        return self.max_seconds is not None and self.total_seconds >= self.max_seconds

    def add(self, path: Path, pkg_dir: Path, res: PackageResult) -> None:
        """List one audio file of package ``res.name`` (with its labels by the package's rules), or
        count in ``res.skipped`` why not."""
        if self.full():
            res.skipped["over --max-hours"] += 1
            return
        name = res.name
        inner = "/" + path.relative_to(pkg_dir).as_posix()
        known, labels = _rule_for(name, inner)
        if labels is SKIP:
            res.skipped["not music/speech (rule)"] += 1
            return
        digest = _file_digest(path)
        if digest in self.seen_digests:
            res.skipped["duplicate of " + self.seen_digests[digest].split("/")[1]] += 1
            return
        rel = path.relative_to(self.out).as_posix()
        try:
            info = audio_info(path)
            duration = info.duration
            if self.verify:
                # Full decode: catches corrupt streams and NaN, and gives
                # the true length (libsndfile's MP3 header length is an
                # estimate, a fraction of a second long).
                duration = len(load_audio(path, info.sample_rate)) / info.sample_rate
        except AudioError as e:
            res.skipped[e.reason] += 1
            self.warn(f"skipping {rel}: {e}")
            return
        if info.frames <= 0:
            res.skipped["empty"] += 1
            return
        self.seen_digests[digest] = rel
        fmt = f"{info.format}/{info.subtype}"
        res.files += 1
        res.seconds += duration
        res.formats[fmt] += 1
        res.sample_rates[info.sample_rate] += 1
        self.total_seconds += duration
        self.entries.append(
            ManifestEntry(
                path=rel,
                split=_hash_split(rel) if res.split == "hash" else res.split,
                positives=frozenset(k for k, v in labels.items() if v == 1),
                negatives=frozenset(k for k, v in labels.items() if v == 0),
                missing=frozenset(k for k, v in labels.items() if v is None),
                missing_all=not known,
                extra={
                    "package": name,
                    "duration": round(duration, 4),
                    "sample_rate": info.sample_rate,
                    "channels": info.channels,
                    "format": fmt,
                },
            )
        )


def _write_summary(out: Path, manifest_path: Path, listing: _Listing, results: Sequence[PackageResult]) -> None:
    """``OUT/summary.json``: entries and hours (in all, per split, per package) of the manifest just written."""
    entries = listing.entries
    summary = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "manifest": manifest_path.name,
        "entries": len(entries),
        "hours": round(listing.total_seconds / 3600, 4),
        "hours_by_split": {
            s: round(sum(e.extra["duration"] for e in entries if e.split == s) / 3600, 4)
            for s in sorted({e.split for e in entries})
        },
        "packages": {r.name: r.as_dict() for r in results},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _print_table(results: Sequence[PackageResult]) -> None:
    print(f"{'package':32} {'split':6} {'status':10} {'files':>6} {'hours':>7}  formats")
    # status: ok, failed, or max-hours (not fetched: --max-hours was reached)
    total = 0.0
    for r in results:
        total += r.seconds
        fmts = ", ".join(f"{k} x{v}" for k, v in r.formats.most_common())
        print(f"{r.name:32} {r.split:6} {r.status[:10]:10} {r.files:6d} {r.seconds / 3600:7.3f}  {fmts}")
        if r.skipped:
            print(f"{'':32}   skipped: " + ", ".join(f"{k}: {v}" for k, v in r.skipped.items()))
    print(f"{'total':32} {'':6} {'':10} {sum(r.files for r in results):6d} {total / 3600:7.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m edgetag.training.prepare_audio",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--out", type=Path, required=True, help="data folder (keep it outside the repository)")
    ap.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES), metavar="PKG")
    ap.add_argument("--test-packages", nargs="*", default=list(DEFAULT_TEST_PACKAGES), metavar="PKG",
                    help="packages held out whole as the test split")
    ap.add_argument("--valid-packages", nargs="*", default=list(DEFAULT_VALID_PACKAGES), metavar="PKG",
                    help="packages held out whole as the valid split")
    ap.add_argument("--hash-split", nargs="*", default=list(DEFAULT_HASH_SPLIT), metavar="PKG",
                    help="packages whose files are split 80/10/10 by path hash instead")
    ap.add_argument("--max-hours", type=float, default=None,
                    help="stop adding files (and downloading packages) once this many hours are listed")
    ap.add_argument("--cache", type=Path, default=None, help="where .deb files go (default OUT/debs)")
    ap.add_argument("--keep-debs", action="store_true", help="keep the .deb files after extraction")
    ap.add_argument("--verify", action="store_true", help="decode every file fully (slower)")
    ap.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="manifest format")
    ap.add_argument("--dry-run", action="store_true", help="print download sizes and exit")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    try:
        _require_tools()
        if args.dry_run:
            total = 0
            for name in args.packages:
                done = (args.out / "packages" / name / MARKER).exists()
                cached = any((args.cache or args.out / "debs").glob(f"{name}_*.deb"))
                info = package_download_size(name)
                if info is None:
                    print(f"{name:32} not found in the package lists (apt-get update?)")
                    continue
                note = "  (already extracted)" if done else "  (.deb cached)" if cached else ""
                print(f"{name:32} {info[0]:20} {info[1] / 1e6:8.1f} MB{note}")
                total += 0 if done or cached else info[1]
            print(f"{'to download':32} {'':20} {total / 1e6:8.1f} MB")
            return 0
        manifest, results = prepare(
            args.out,
            args.packages,
            test_packages=args.test_packages,
            valid_packages=args.valid_packages,
            hash_split=args.hash_split,
            max_hours=args.max_hours,
            cache=args.cache,
            keep_debs=args.keep_debs,
            verify=args.verify,
            manifest_name=f"manifest.{args.format}",
            progress=not args.no_progress,
        )
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _print_table(results)
    print(f"manifest: {manifest} ({sum(r.files for r in results)} files); summary: {manifest.parent / 'summary.json'}")
    failed = [r.name for r in results if r.status == "failed"]
    if failed:
        print(f"error: {len(failed)} package(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
