"""audit-data s3://bucket/prefix against a local S3 server (moto, loopback only, started and
stopped here): the numbers of the same files on disk, paths relative to the prefix, and no
credential anywhere in the HTML or JSON report."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import speech_like

from codecdoctor.audit import audit_data

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")

KEY = "AKIACODECDOCTORTEST1"
SECRET = "s3cr3t-codecdoctor-never-in-a-report"
SR = 16000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with bucket 'corpus' holding the files under prefix 'raw/'."""
    disk = tmp_path_factory.mktemp("disk")
    sf.write(disk / "a.wav", speech_like(1.0, SR, seed=1, peak=0.5), SR, subtype="PCM_16")
    (disk / "spk1").mkdir()
    hot = speech_like(0.8, SR, seed=2, peak=0.9)
    sf.write(disk / "spk1" / "hot.wav", (hot * (1.0129 / np.abs(hot).max())).astype(np.float32), SR, subtype="FLOAT")
    sf.write(disk / "spk1" / "b.flac", speech_like(1.3, SR, seed=3, peak=0.3), SR, subtype="PCM_16")
    (disk / "spk1" / "b.txt").write_text("transcript")
    (disk / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                              region_name="us-east-1")
        client.create_bucket(Bucket="corpus")
        for path in sorted(p for p in disk.rglob("*") if p.is_file()):
            client.upload_file(str(path), "corpus", f"raw/{path.relative_to(disk).as_posix()}")
        options = {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        yield disk, options
    finally:
        server.stop()


def test_s3_prefix_gives_the_numbers_of_the_files_on_disk(s3):
    disk, options = s3
    remote = audit_data("s3://corpus/raw", storage_options=options, jobs=1)
    local = audit_data(disk, jobs=1)
    assert remote.measurements["files"] == local.measurements["files"]  # same relative paths, same numbers
    assert sorted((f.id, f.subject) for f in remote.findings) == sorted((f.id, f.subject) for f in local.findings)
    assert remote.args["directory"] == "s3://corpus/raw"


def test_no_credential_in_the_reports(s3, cli, tmp_path):
    _, options = s3
    code, out, err = cli("audit-data", "s3://corpus/raw", "--storage-options", json.dumps(options), "--jobs", "1",
                         "--json", tmp_path / "r.json", "--html", tmp_path / "r.html", "--no-progress")
    assert code == 1, err  # broken.wav is an error-level finding
    for text in ((tmp_path / "r.json").read_text(), (tmp_path / "r.html").read_text(), out, err):
        assert SECRET not in text and KEY not in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert "spk1/hot.wav" in {f["subject"] for f in report["findings"] if f["id"] == "D103"}
    assert "storage_options" not in json.dumps(report["args"])


def test_credentials_in_a_url_or_a_bad_location_never_reach_the_error(s3, cli):
    _, options = s3
    anonymous = {"client_kwargs": options["client_kwargs"]}
    code, out, err = cli("audit-data", f"s3://{KEY}:{SECRET}@corpus/raw", "--storage-options", json.dumps(anonymous),
                         "--json", "none", "--html", "none", "--no-progress")
    assert code == 2 and err.strip().count("\n") == 0  # s3 takes no credentials in the URL: a one-line error
    assert SECRET not in err + out and KEY not in err + out
    code, _, err = cli("audit-data", "s3://no-such-bucket/x", "--storage-options", json.dumps(options),
                       "--json", "none", "--html", "none")
    assert code == 2 and err.strip().count("\n") == 0 and SECRET not in err
    code, _, err = cli("audit-data", "s3://corpus/raw", "--storage-options", "{not json " + SECRET)
    assert code == 2 and "not valid JSON" in err and SECRET not in err


def test_shard_partials_in_the_bucket_merge_to_the_single_run(s3, tmp_path):
    from codecdoctor.audit import merge_partials
    from codecdoctor.report import json as json_out

    _, options = s3
    client = boto3.client("s3", endpoint_url=options["client_kwargs"]["endpoint_url"], aws_access_key_id=KEY,
                          aws_secret_access_key=SECRET, region_name="us-east-1")
    urls = []
    for i in (1, 2):
        part = audit_data("s3://corpus/raw", storage_options=options, jobs=1, shard=f"{i}/2")
        client.put_object(Bucket="corpus", Key=f"reports/part{i}.json", Body=json_out.dumps(part).encode())
        urls.append(f"s3://corpus/reports/part{i}.json")
    merged = merge_partials(urls, storage_options=options)
    single = audit_data("s3://corpus/raw", storage_options=options, jobs=1)
    assert merged.measurements["files"] == single.measurements["files"]
    assert [f.to_dict() for f in merged.sorted_findings()] == [f.to_dict() for f in single.sorted_findings()]
    assert merged.args["merged_from"] == urls
