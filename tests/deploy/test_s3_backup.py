"""Backups to and from an S3 bucket: shoestring's own S3 API on loopback as the service.

Credentials and the endpoint reach boto3 the standard way, through the
environment, as they would on a laptop (AWS_ENDPOINT_URL_S3 for a service
other than AWS).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from shoestring.cli import main
from shoestring.deploy.errors import BackupError
from shoestring.deploy.s3 import BackupBucket, S3Location
from shoestring.storage.credentials import NewKey
from tests.deploy.conftest import ITEMS, OBJECTS, contents
from tests.storage.conftest import ServerThread, serve

BUCKET = "backups"
runner = CliRunner()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServerThread]:
    """An S3 service with an empty bucket `backups`."""
    running = serve(tmp_path / "s3")
    running.client().create_bucket(Bucket=BUCKET)
    yield running
    running.stop()


def use_key(monkeypatch: pytest.MonkeyPatch, key: NewKey, secret: str | None = None) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key.key.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret or key.secret_access_key)


@pytest.fixture
def aws(service: ServerThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ServerThread:
    """The environment a person sets for another S3 service; nothing from this machine's ~/.aws."""
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN",
                 "AWS_ENDPOINT_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    # A host name, not an address: boto3 would put the bucket in it unless told path-style.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://localhost:{service.port}/_s3")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    use_key(monkeypatch, service.new_key())
    return service


def local_backups(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "xdg").rglob("*"))


def cli(*args: str) -> Result:
    result = runner.invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def test_backup_to_s3_then_restore_from_s3_into_a_fresh_data_dir(
    aws: ServerThread, filled: Path, tmp_path: Path
) -> None:
    backed_up = cli("backup", "--project", str(filled.parent), "--to", f"s3://{BUCKET}/nightly/")
    assert backed_up.exit_code == 0, backed_up.output
    url = backed_up.stdout.strip()
    assert url.startswith(f"s3://{BUCKET}/nightly/project-")  # the project directory's name
    assert url.endswith(".backup.tar.gz")
    listed = aws.client().list_objects_v2(Bucket=BUCKET)["Contents"]
    assert [f"s3://{BUCKET}/{item['Key']}" for item in listed] == [url]
    # The local copy made on the way is gone: only the bucket holds the secrets.
    assert [p for p in local_backups(tmp_path) if p.is_file()] == []

    fresh = tmp_path / "fresh" / "project"  # the same project (a backup of another needs --force)
    fresh.mkdir(parents=True)
    restored = cli("restore", "--project", str(fresh), url)
    assert restored.exit_code == 0, restored.output
    items, objects, secrets = asyncio.run(contents(fresh / "data"))
    assert len(items) == len(ITEMS) and objects == OBJECTS
    assert secrets["stripe-token"] == "sk_live_very_secret"
    assert [p for p in local_backups(tmp_path) if p.is_file()] == []


def test_a_large_backup_travels_in_parts(aws: ServerThread, tmp_path: Path) -> None:
    archive = tmp_path / "large.tar.gz"
    archive.write_bytes(os.urandom(20 * 1024 * 1024))
    location = S3Location(BUCKET, "large.tar.gz")
    sent: list[int] = []
    BackupBucket(location).upload(archive, progress=sent.append)
    assert sum(sent) == archive.stat().st_size and len(sent) > 2
    etag = aws.client().head_object(Bucket=BUCKET, Key="large.tar.gz")["ETag"]
    assert etag.strip('"').endswith("-3")  # three 8 MB parts
    back = tmp_path / "back.tar.gz"
    received: list[int] = []
    bucket = BackupBucket(location)
    assert bucket.size() == archive.stat().st_size
    bucket.download(back, progress=received.append)
    assert back.read_bytes() == archive.read_bytes() and sum(received) == len(back.read_bytes())
    assert oct(back.stat().st_mode & 0o777) == oct(0o600)


@pytest.mark.parametrize("failure", ["network", "ctrl-c"])
def test_a_failed_upload_leaves_no_object_and_no_upload(
    aws: ServerThread, tmp_path: Path, failure: str
) -> None:
    archive = tmp_path / "large.tar.gz"
    archive.write_bytes(os.urandom(20 * 1024 * 1024))
    sent: list[int] = []
    interrupted = threading.Event()

    def cut(count: int) -> None:  # a few MB in, once the multipart upload has begun
        sent.append(count)
        if sum(sent) < 9 * 1024 * 1024:
            return
        if failure == "network":
            raise ConnectionResetError("the network went away")
        if not interrupted.is_set():
            interrupted.set()
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C

    expected = ConnectionResetError if failure == "network" else KeyboardInterrupt
    with pytest.raises(expected):
        BackupBucket(S3Location(BUCKET, "large.tar.gz")).upload(archive, progress=cut)
    client = aws.client()
    with pytest.raises(ClientError, match="404"):
        client.head_object(Bucket=BUCKET, Key="large.tar.gz")
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_wrong_credentials_are_a_clear_error_and_write_nothing(
    aws: ServerThread, filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(b"a backup")
    aws.client().upload_file(str(archive), BUCKET, "b.tar.gz")
    use_key(monkeypatch, aws.new_key(), secret="not-the-secret")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    restored = cli("restore", "--project", str(fresh), f"s3://{BUCKET}/b.tar.gz")
    assert restored.exit_code == 1
    assert "refused the credentials from AWS_ACCESS_KEY_ID in the environment" in restored.output
    assert "SignatureDoesNotMatch" in restored.output and "not-the-secret" not in restored.output
    backed_up = cli("backup", "--project", str(filled.parent), "--to", f"s3://{BUCKET}/")
    assert backed_up.exit_code == 1 and "refused the credentials" in backed_up.output
    assert list(fresh.iterdir()) == [] and local_backups(tmp_path) == []


def test_a_profile_in_the_aws_files_serves_as_well(
    aws: ServerThread, filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = aws.new_key()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_PROFILE", "backups")
    (tmp_path / "aws-config").write_text(
        f"[profile backups]\nendpoint_url = http://localhost:{aws.port}/_s3\n"
    )
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        f"[backups]\naws_access_key_id = {key.key.access_key_id}\n"
        f"aws_secret_access_key = {key.secret_access_key}\n"
    )
    url = f"s3://{BUCKET}/b.tar.gz"
    assert cli("backup", "--project", str(filled.parent), "--to", url).exit_code == 0
    credentials.write_text(credentials.read_text().replace(key.secret_access_key, "wrong"))
    result = cli("restore", "--project", str(tmp_path), url)
    assert result.exit_code == 1
    assert "refused the credentials from ~/.aws/credentials (profile backups)" in result.output


def test_without_credentials_nothing_is_sent(
    aws: ServerThread, filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = cli("backup", "--project", str(filled.parent), "--to", f"s3://{BUCKET}/")
    assert result.exit_code == 1
    assert "no AWS credentials" in result.output and "AWS_ACCESS_KEY_ID" in result.output
    assert local_backups(tmp_path) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://nowhere/b.tar.gz", "there is no bucket 'nowhere'"),
        (f"s3://{BUCKET}/missing.tar.gz", f"there is no backup at s3://{BUCKET}/missing.tar.gz"),
        (f"s3://{BUCKET}/nightly/", "names a folder, not a backup"),
        ("s3:///b.tar.gz", "names no bucket"),
    ],
)
def test_a_missing_bucket_or_backup_says_so(
    aws: ServerThread, tmp_path: Path, url: str, message: str
) -> None:
    result = cli("restore", "--project", str(tmp_path), url)
    assert result.exit_code == 1
    assert message in result.output
    assert local_backups(tmp_path) == []


def test_access_denied_says_which_permission(
    aws: ServerThread, filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.client().create_bucket(Bucket="elsewhere")
    use_key(monkeypatch, aws.new_key("elsewhere"))
    result = cli("restore", "--project", str(tmp_path), f"s3://{BUCKET}/b.tar.gz")
    assert result.exit_code == 1
    assert f"access to s3://{BUCKET}/b.tar.gz is denied" in result.output
    assert "s3:GetObject" in result.output

    use_key(monkeypatch, aws.new_key(BUCKET, write=False))
    result = cli("backup", "--project", str(filled.parent), "--to", f"s3://{BUCKET}/b.tar.gz")
    assert result.exit_code == 1
    assert "is denied" in result.output and "s3:PutObject" in result.output
    assert [p for p in local_backups(tmp_path) if p.is_file()] == []


def test_a_key_that_may_only_write_can_back_up(
    aws: ServerThread, filled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = aws.client()
    use_key(monkeypatch, aws.new_key(BUCKET, read=False))
    result = cli("backup", "--project", str(filled.parent), "--to", f"s3://{BUCKET}/b.tar.gz")
    assert result.exit_code == 0, result.output
    assert owner.head_object(Bucket=BUCKET, Key="b.tar.gz")["ContentLength"] > 0


def test_deploy_restore_reads_the_backup_before_reaching_the_host(
    aws: ServerThread, filled: Path, tmp_path: Path
) -> None:
    project = filled.parent
    (project / "shoestring.toml").write_text(
        f'[deploy]\nhost = "root@127.0.0.1:1"\nknown_hosts = "{tmp_path}/known"\n'
    )
    missing = cli("deploy", "--project", str(project), "--restore", f"s3://{BUCKET}/none.tar.gz")
    assert missing.exit_code == 1 and "there is no backup at" in missing.output
    backed_up = cli("backup", "--project", str(project), "--to", f"s3://{BUCKET}/")
    assert backed_up.exit_code == 0, backed_up.output
    found = cli("deploy", "--project", str(project), "--restore", backed_up.stdout.strip())
    assert found.exit_code == 1 and "cannot connect to root@127.0.0.1:1" in found.output
    assert [p for p in local_backups(tmp_path) if p.is_file()] == []


_NAMES = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789.-"), min_size=3, max_size=63)
_KEYS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
).filter(lambda key: not key.endswith("/"))


@given(bucket=_NAMES, key=_KEYS)
def test_locations_read_back_as_written(bucket: str, key: str) -> None:
    location = S3Location(bucket, key)
    assert S3Location.parse(str(location)) == location
    folder = S3Location.parse(f"s3://{bucket}/{key}/", default_name="x.tar.gz")
    assert folder == S3Location(bucket, f"{key}/x.tar.gz")
    with pytest.raises(BackupError, match="names a folder"):
        S3Location.parse(f"s3://{bucket}/{key}/")


def test_the_bucket_alone_gets_the_default_name() -> None:
    assert S3Location.parse("s3://b", default_name="x") == S3Location("b", "x")
    assert S3Location.parse("s3://b/", default_name="x") == S3Location("b", "x")
