"""`shoestring storage cp` with the mistakes people make with local files."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from shoestring.cli import main

runner = CliRunner()


def storage(project: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(main, ["storage", *args, "--project", str(project)])
    return result.exit_code, result.output


def test_cp_explains_missing_files_directories_and_objects(tmp_path: Path) -> None:
    project = tmp_path / "demo"
    runner.invoke(main, ["new", str(project)])
    assert storage(project, "mb", "s3://photos")[0] == 0
    cases = [
        (("cp", str(tmp_path / "nofile"), "s3://photos/a"), "no file"),
        (("cp", str(tmp_path), "s3://photos/"), "is a directory"),
        (("cp", "s3://photos/missing.txt", str(tmp_path / "m.txt")), "no object s3://photos/missing.txt"),
        (("cp", "s3://photos/x", str(tmp_path / "no" / "dir" / "x")), "no directory"),
    ]  # fmt: skip
    for args, message in cases:
        status, output = storage(project, *args)
        assert status != 0 and message in output, output
        assert "Traceback" not in output
    assert list(tmp_path.glob("*.txt")) == [] and list(tmp_path.glob(".*part")) == []


def test_cp_down_and_up_names_the_file_it_wrote(tmp_path: Path) -> None:
    project = tmp_path / "demo"
    runner.invoke(main, ["new", str(project)])
    storage(project, "mb", "photos")
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"\xff\xd8" + bytes(2500))
    status, output = storage(project, "cp", str(photo), "s3://photos/2026/")
    assert status == 0 and "2.5 kB" in output and "s3://photos/2026/cat.jpg" in output
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    status, output = storage(project, "cp", "s3://photos/2026/cat.jpg", str(downloads))
    assert status == 0 and str(downloads / "cat.jpg") in output, output
    assert (downloads / "cat.jpg").read_bytes() == photo.read_bytes()
    assert [p.name for p in downloads.iterdir()] == ["cat.jpg"]  # no temporary file left
