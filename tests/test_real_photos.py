import csv

import pytest
from PIL import Image

from attribench.data import real_photos
from attribench.data.real_photos import export_sample_photos, sample_photo_paths


@pytest.fixture(scope="module")
def photos():
    return sample_photo_paths()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_sample_photos(tmp_path_factory.mktemp("real") / "photos")


def test_photos_resolve(photos):
    assert len(photos) >= 40
    assert all(p.is_absolute() and p.is_file() for _, p, _ in photos)
    assert len({(s, p.name) for s, p, _ in photos}) == len(photos)


def test_captions_nonempty_and_unique(photos):
    captions = [c.strip() for _, _, c in photos]
    assert all(captions)
    assert len(set(captions)) == len(captions)


def test_missing_file_names_package_and_file(tmp_path, monkeypatch):
    bad = tmp_path / "captions.csv"
    bad.write_text("source,file,caption\nsklearn,no_such_photo.jpg,A photo.\n")
    monkeypatch.setattr(real_photos, "CAPTIONS_CSV", bad)
    with pytest.raises(FileNotFoundError, match=r"sklearn.*no_such_photo\.jpg"):
        sample_photo_paths()


def test_export_one_jpeg_per_row(photos, exported):
    with open(exported / "captions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    names = [r["file"] for r in rows]
    assert len(rows) == len(photos)
    assert names == [f"{s}__{p.stem}.jpg" for s, p, _ in photos]
    assert sorted(names) == sorted(p.name for p in exported.glob("*.jpg"))
    assert {p.name for p in exported.iterdir()} == set(names) | {"captions.csv"}


def test_exported_images_are_rgb_jpegs_of_usable_size(exported):
    for path in exported.glob("*.jpg"):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB", path.name
            assert min(im.size) >= 256, (path.name, im.size)


def test_jpeg_sources_copied_byte_for_byte(photos, exported):
    jpegs = [(s, p) for s, p, _ in photos if p.suffix.lower() in (".jpg", ".jpeg")]
    assert jpegs
    for s, p in jpegs:
        assert (exported / f"{s}__{p.stem}.jpg").read_bytes() == p.read_bytes()


def test_export_replaces_existing_dir_without_leftovers(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert export_sample_photos(out) == out
    assert not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]  # no temp/old dirs left beside it
