"""The enrolment benchmark's everyday-sounds set: its class rule, its groups and the audio-only unpacking."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgetag.benchmarks.enrollment import SFX_PACKAGES, _unpack_audio, sfx_class, sfx_group, sfx_rows


@pytest.mark.parametrize(("name", "label"), [
    ("default_snow_footstep.1.ogg", "footstep"),
    ("step_leather3.ogg", "footstep"),
    ("bird2_04.ogg", "bird"),
    ("forest_owl_loop.ogg", "bird"),
    ("wolf-growl-2.ogg", "wolf"),  # "growl" holds "owl": a wolf, not a bird
    ("tree_howling.ogg", None),
    ("bull_ack1.wav", "cow"),
    ("bullet_reflected_sound_0.ogg", None),  # not a bull
    ("horse-canter.wav", "horse"),
    ("horseman_ack1.wav", None),  # a rider's voice
    ("thunder.wav", "thunder"),
    ("thunderstick.ogg", None),  # a gun
    ("water-blast.wav", None),
    ("env_sounds_water.2.ogg", "water"),
    ("fire_archer.wav", None),
    ("fire_flint_and_steel.ogg", None),  # minetest's fire mod: striking, not a fire
    ("crossbow-fire.ogg", None),  # a bow "fires"
    ("campfire.ogg", "fire"),
    ("fire-crackle.ogg", "fire"),
    ("crow-caw.ogg", "bird"),
    ("werewolf.ogg", None),
    ("cowbell.wav", None),
    ("moose_00.ogg", None),
    ("underwater.ogg", None),
    ("doorbell.wav", None),
    ("doors_steel_door_open.ogg", "door"),
    ("menu_click.ogg", None),
])
def test_sfx_class_reads_whole_words(name: str, label: str | None) -> None:
    assert sfx_class(name) == label


@pytest.mark.parametrize(("names", "same"), [
    (("sheep1.wav", "sheep10.wav", "Sheep_2.WAV"), True),
    (("default_snow_footstep.1.ogg", "default_snow_footstep.2.ogg"), True),
    (("open_fire.ogg", "open_fire_loop.ogg"), True),  # takes of one sound
    (("flame-big.ogg", "flame-big-miss.ogg"), True),
    (("wolf-hit-1.ogg", "wolf-die-1.ogg"), False),
    (("default_snow_footstep.1.ogg", "default_sand_footstep.1.ogg"), False),
])
def test_sfx_group_joins_variants_and_takes(names: tuple[str, ...], same: bool) -> None:
    assert (len({sfx_group("pkg", n) for n in names}) == 1) == same


def test_sfx_rows_group_variants_drop_copies_and_skip_voices(tmp_path: Path) -> None:
    pkg = tmp_path / SFX_PACKAGES[0] / "sounds"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "voices").mkdir()
    (pkg / "a" / "sheep1.wav").write_bytes(b"one")
    (pkg / "a" / "sheep2.wav").write_bytes(b"two")
    (pkg / "b" / "sheep1.wav").write_bytes(b"one")  # the same sound in another tileset
    (pkg / "a" / "wolf.ogg").write_bytes(b"three")
    (pkg / "voices" / "sheep_herder.ogg").write_bytes(b"speech")
    (pkg / "a" / "sheep.txt").write_bytes(b"not audio")
    rows = sfx_rows(tmp_path)
    assert sorted((Path(r["path"]).name, r["label"], r["group"]) for r in rows) == [
        ("sheep1.wav", "sheep", f"{SFX_PACKAGES[0]}/sheep"),
        ("sheep2.wav", "sheep", f"{SFX_PACKAGES[0]}/sheep"),
        ("wolf.ogg", "wolf", f"{SFX_PACKAGES[0]}/wolf"),
    ]


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")
def test_unpack_audio_takes_only_audio_files(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: edgetag-test\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: t\n")
    data = tree / "usr" / "share" / "game"
    data.mkdir(parents=True)
    (data / "boom.ogg").write_bytes(b"ogg")
    (data / "Hit.WAV").write_bytes(b"wav")
    (data / "sprite.png").write_bytes(b"png")
    deb = tmp_path / "t.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True,
                   capture_output=True)
    out = tmp_path / "out"
    _unpack_audio(deb, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "usr/share/game/Hit.WAV", "usr/share/game/boom.ogg"]
