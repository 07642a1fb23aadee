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
