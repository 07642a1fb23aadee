"""prepare_audio: audio inside game archives (.pk3 zips) is unpacked once, and never outside the package."""


def test_unpack_archives_extracts_audio_members_once(tmp_path):
    import zipfile

    from edgetag.training.prepare_audio import ARCHIVES_DIR, unpack_archives

    pkg = tmp_path / "pkg"
    (pkg / "usr/share/game").mkdir(parents=True)
    with zipfile.ZipFile(pkg / "usr/share/game/0music.pk3", "w") as z:
        z.writestr("music/a.ogg", b"OggS-not-really")
        z.writestr("maps/level.bsp", b"x")
    assert unpack_archives(pkg) == 1
    assert (pkg / ARCHIVES_DIR / "0music" / "music" / "a.ogg").read_bytes() == b"OggS-not-really"
    assert not (pkg / ARCHIVES_DIR / "0music" / "maps").exists()
    assert unpack_archives(pkg) == 0  # done once: the marker is there


def test_unpack_archives_refuses_escaping_members(tmp_path):
    import zipfile

    import pytest

    from edgetag.training.prepare_audio import unpack_archives

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    with zipfile.ZipFile(pkg / "evil.pk3", "w") as z:
        z.writestr("../../escape.ogg", b"x")
    with pytest.raises(RuntimeError, match="escapes the archive"):
        unpack_archives(pkg)
    assert not (tmp_path / "escape.ogg").exists()


def test_game_data_packages_keep_their_soundtrack_and_skip_the_rest():
    """Paths as they are in the Debian packages: the soundtrack is music, effects and voices are skipped."""
    from edgetag.training.prepare_audio import MUSIC, MUSIC_IN_GAME_DATA, _rule_for

    kept = {
        "hedgewars-data": "/usr/share/games/hedgewars/Data/Music/Art.ogg",
        "widelands-data": "/usr/share/games/widelands/data/music/ingame_01.ogg",
        "supertux-data": "/usr/share/games/supertux2/music/forest/forest2.ogg",
        "megaglest-data": "/usr/share/games/megaglest/techs/megapack/factions/indian/music/music_indian.ogg",
        "frozen-bubble-data": "/usr/share/games/frozen-bubble/snd/introzik.ogg",
        "naev-data": "/usr/share/naev/dat/snd/music/combat1.ogg",
        "lincity-ng-data": "/usr/share/games/lincity-ng/music/default/02 - Robert van Herk - City Blues.ogg",
    }
    skipped = {
        "hedgewars-data": "/usr/share/games/hedgewars/Data/Sounds/voices/Default/Amazing.ogg",
        "widelands-data": "/usr/share/games/widelands/data/sound/animals/wolf_01.ogg",
        "supertux-data": "/usr/share/games/supertux2/sounds/jump.wav",
        "megaglest-data": "/usr/share/games/megaglest/tilesets/autumn/sounds/wind.ogg",
        "frozen-bubble-data": "/usr/share/games/frozen-bubble/snd/launch.ogg",
        "naev-data": "/usr/share/naev/dat/snd/sounds/hail.ogg",
        "marsshooter-data": "/usr/share/games/marsshooter/audio/tutorial.ogg",
        "freecol": "/usr/share/games/freecol/default/resources/sound/anthem/dutch.ogg",
        "lincity-ng-data": "/usr/share/games/lincity-ng/sounds/MarketLow1.wav",
    }
    for package, path in kept.items():
        assert package in MUSIC_IN_GAME_DATA
        assert _rule_for(package, path) == (True, MUSIC), path
    for package, path in skipped.items():
        assert _rule_for(package, path) == (True, None), path


def test_held_out_packages_are_fetched_by_default_and_in_one_split_each():
    from edgetag.training.prepare_audio import DEFAULT_PACKAGES, DEFAULT_TEST_PACKAGES, DEFAULT_VALID_PACKAGES

    held_out = DEFAULT_TEST_PACKAGES + DEFAULT_VALID_PACKAGES
    assert set(held_out) <= set(DEFAULT_PACKAGES)
    assert not set(DEFAULT_TEST_PACKAGES) & set(DEFAULT_VALID_PACKAGES)
    assert len(set(held_out)) == len(held_out)
