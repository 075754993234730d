"""`longlive-rtc download`: the file list, the layout, skip/resume logic and errors (no network)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest

from longlive_rtc.model.download import (
    WEIGHT_FILES,
    DownloadError,
    WeightFile,
    download_weights,
    hub_download,
    missing_files,
    needed_files,
)


def fake_fetch(calls: list[str]):
    def fetch(file: WeightFile, dest: Path) -> Path:
        calls.append(file.filename)
        path = file.path(dest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        return path

    return fetch


def test_file_list_is_the_official_layout(tmp_path):
    paths = {f.role: f.path(tmp_path).relative_to(tmp_path).as_posix() for f in WEIGHT_FILES}
    assert paths == {
        "vae": "wan_models/Wan2.1-T2V-1.3B/Wan2.1_VAE.pth",
        "t5": "wan_models/Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth",
        "tokenizer": "wan_models/Wan2.1-T2V-1.3B/google/umt5-xxl/tokenizer.json",
        "base": "longlive_models/models/longlive_base.pt",
        "lora": "longlive_models/models/lora.pt",
        "tae": "taehv/taew2_1.pth",
    }
    assert {f.repo_id for f in WEIGHT_FILES} == {
        "Wan-AI/Wan2.1-T2V-1.3B",
        "Efficient-Large-Model/LongLive-1.3B",
        "lightx2v/Autoencoders",
    }
    assert [f.role for f in needed_files(include_tae=False)] == ["vae", "t5", "tokenizer", "base", "lora"]
    assert 15e9 < sum(f.approx_bytes for f in WEIGHT_FILES) < 25e9


def test_download_fetches_missing_then_skips(tmp_path):
    calls: list[str] = []
    logs: list[str] = []
    dest = download_weights(tmp_path / "w", fetch=fake_fetch(calls), log=logs.append)
    assert dest == tmp_path / "w"
    assert calls == [f.filename for f in WEIGHT_FILES]
    assert missing_files(dest) == []
    assert any("GB" in line for line in logs)
    calls.clear()
    download_weights(dest, fetch=fake_fetch(calls), log=logs.append)
    assert calls == [] and "all weight files present" in logs[-1]
    download_weights(dest, force=True, fetch=fake_fetch(calls), log=logs.append)
    assert len(calls) == len(WEIGHT_FILES)


def test_download_resumes_only_what_is_missing(tmp_path):
    for f in WEIGHT_FILES[:3]:
        f.path(tmp_path).parent.mkdir(parents=True, exist_ok=True)
        f.path(tmp_path).write_bytes(b"done")
    calls: list[str] = []
    download_weights(tmp_path, include_tae=False, fetch=fake_fetch(calls), log=lambda _: None)
    assert calls == ["models/longlive_base.pt", "models/lora.pt"]
    assert missing_files(tmp_path, include_tae=False) == [] and missing_files(tmp_path)[0].role == "tae"


def test_download_error_names_file_and_retry_command(tmp_path):
    def broken(file: WeightFile, dest: Path) -> Path:
        raise OSError("connection reset")

    with pytest.raises(DownloadError) as err:
        download_weights(tmp_path, fetch=broken, log=lambda _: None)
    message = str(err.value)
    assert "Wan2.1_VAE.pth" in message and "Wan-AI/Wan2.1-T2V-1.3B" in message and "connection reset" in message
    assert f"longlive-rtc download --dir {tmp_path}" in message


def test_download_checks_where_the_file_landed(tmp_path):
    def elsewhere(file: WeightFile, dest: Path) -> Path:
        return dest / "somewhere.bin"

    with pytest.raises(DownloadError, match="expected"):
        download_weights(tmp_path, fetch=elsewhere, log=lambda _: None)


def test_hub_download_is_a_thin_hf_hub_download_call(tmp_path, monkeypatch):
    seen = {}

    def fake_hf_hub_download(repo_id, filename, local_dir, **kwargs):
        seen.update(repo_id=repo_id, filename=filename, local_dir=Path(local_dir), kwargs=kwargs)
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"x")
        return str(out)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    lora = next(f for f in WEIGHT_FILES if f.role == "lora")
    assert hub_download(lora, tmp_path) == lora.path(tmp_path)
    assert seen == {
        "repo_id": "Efficient-Large-Model/LongLive-1.3B",
        "filename": "models/lora.pt",
        "local_dir": tmp_path / "longlive_models",
        "kwargs": {},
    }


def test_without_network_one_error_says_which_files_to_copy_where(tmp_path):
    calls: list[str] = []
    dest = tmp_path / "w"
    (dest / WEIGHT_FILES[0].local_dir).mkdir(parents=True)
    WEIGHT_FILES[0].path(dest).write_bytes(b"done")  # present: not asked for again
    with pytest.raises(DownloadError) as err:
        download_weights(dest, fetch=fake_fetch(calls), unreachable=lambda _: "ConnectError: no route", log=len)
    message = str(err.value)
    assert calls == [] and "\n" not in message and "no route" in message and "by hand" in message
    assert str(WEIGHT_FILES[0].path(dest)) not in message
    for file in WEIGHT_FILES[1:]:
        assert str(file.path(dest)) in message and file.repo_id in message
    assert "--no-tae" in message and f"longlive-rtc download --dir {dest}" in message
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "wan_models", "wan_models/Wan2.1-T2V-1.3B", "wan_models/Wan2.1-T2V-1.3B/Wan2.1_VAE.pth"
    ]  # fmt: skip


def test_a_failed_fetch_leaves_no_empty_cache_folders_but_keeps_partial_downloads(tmp_path):
    def broken_after_locking(file: WeightFile, dest: Path) -> Path:  # what hf_hub_download leaves behind
        download = dest / file.local_dir / ".cache" / "huggingface" / "download"
        download.mkdir(parents=True)
        (download / f"{Path(file.filename).name}.lock").touch()
        if file.role == "base":
            (download / "longlive_base.pt.incomplete").write_bytes(b"part")
        raise OSError("connection reset")

    for wanted in (["vae"], ["base"]):
        dest = tmp_path / wanted[0]
        files = [f for f in WEIGHT_FILES if f.role != wanted[0]]
        for f in files:
            f.path(dest).parent.mkdir(parents=True, exist_ok=True)
            f.path(dest).write_bytes(b"done")
        with pytest.raises(DownloadError):
            download_weights(dest, fetch=broken_after_locking, unreachable=lambda _: None, log=lambda _: None)
        caches = [p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file() and ".cache" in p.parts]
        if wanted == ["vae"]:
            assert caches == []
        else:
            assert "longlive_models/.cache/huggingface/download/longlive_base.pt.incomplete" in caches
