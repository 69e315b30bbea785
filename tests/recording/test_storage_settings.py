"""The recording storage settings: what ``s3`` needs, what it refuses, and a secret that no
``repr`` (so no log line of the settings) shows."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, Settings
from gateway.recording.apivideo import ApiVideoStorage
from gateway.recording.storage import LocalStorage, S3Storage, segment_storage

BASE = {"GATEWAY_UPSTREAM": "sim", "GATEWAY_RECORDING": "audio"}
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GATEWAY_RECORDING_STORAGE": "ftp"}, "GATEWAY_RECORDING_STORAGE"),
        ({"GATEWAY_RECORDING_STORAGE": "s3"}, "GATEWAY_RECORDING_S3_BUCKET"),
        (
            {
                "GATEWAY_RECORDING_STORAGE": "s3",
                "GATEWAY_RECORDING_S3_BUCKET": "b",
                "GATEWAY_RECORDING_S3_ACCESS_KEY_ID": "AKID",
            },
            "GATEWAY_RECORDING_S3_SECRET_ACCESS_KEY",
        ),
        ({"GATEWAY_RECORDING_RETRY_SECONDS": "0"}, "GATEWAY_RECORDING_RETRY_SECONDS"),
        ({"GATEWAY_RECORDING": "video"}, "GATEWAY_RECORDING"),
        ({"GATEWAY_RECORDING_STORAGE": "apivideo"}, "GATEWAY_RECORDING_APIVIDEO_KEY"),
        (
            {
                "GATEWAY_RECORDING_STORAGE": "apivideo",
                "GATEWAY_RECORDING_APIVIDEO_KEY": "k",
                "GATEWAY_RECORDING_APIVIDEO_CHUNK_MIB": "1",  # below api.video's 5 MiB
            },
            "GATEWAY_RECORDING_APIVIDEO_CHUNK_MIB",
        ),
    ],
)
def test_a_storage_setting_that_cannot_work_is_refused_by_name(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        Settings.from_env({**BASE, **env})


def test_s3_settings_reach_the_storage_and_the_secret_no_repr() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "GATEWAY_RECORDING_STORAGE": "s3",
            "GATEWAY_RECORDING_S3_BUCKET": "interviews",
            "GATEWAY_RECORDING_S3_ENDPOINT": "http://127.0.0.1:9000",
            "GATEWAY_RECORDING_S3_REGION": "auto",
            "GATEWAY_RECORDING_S3_PREFIX": "eu",
            "GATEWAY_RECORDING_S3_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "GATEWAY_RECORDING_S3_SECRET_ACCESS_KEY": SECRET,
            "GATEWAY_RECORDING_RETRY_SECONDS": "0.5",
        }
    )
    s3 = settings.recording_s3
    assert s3 is not None
    assert (s3.bucket, s3.endpoint, s3.region, s3.prefix) == (
        "interviews", "http://127.0.0.1:9000", "auto", "eu"
    )  # fmt: skip
    assert settings.recording_retry_seconds == 0.5
    assert isinstance(segment_storage(settings), S3Storage)
    assert SECRET not in repr(settings) and SECRET not in repr(s3)
    assert isinstance(segment_storage(Settings.from_env(BASE)), LocalStorage)


def test_apivideo_settings_reach_the_storage_and_the_key_no_repr() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "GATEWAY_RECORDING_STORAGE": "apivideo",
            "GATEWAY_RECORDING_APIVIDEO_KEY": SECRET,
            "GATEWAY_RECORDING_APIVIDEO_URL": "https://sandbox.api.video",
            "GATEWAY_RECORDING_APIVIDEO_CHUNK_MIB": "8",
        }
    )
    apivideo = settings.recording_apivideo
    assert apivideo is not None
    assert (apivideo.base_url, apivideo.chunk_bytes) == ("https://sandbox.api.video", 8 << 20)
    storage = segment_storage(settings)
    assert isinstance(storage, ApiVideoStorage)  # segments on the local disk, as local's are
    assert storage.root == settings.data_dir / "recordings"
    assert SECRET not in repr(settings) and SECRET not in repr(apivideo)
