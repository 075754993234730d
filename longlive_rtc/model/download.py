"""The weight files LongLive needs, where they live on disk, and fetching them from the Hugging Face Hub.

Layout under a weights directory DIR, as the official instructions produce it
(`huggingface-cli download Wan-AI/Wan2.1-T2V-1.3B --local-dir wan_models/Wan2.1-T2V-1.3B`,
`huggingface-cli download Efficient-Large-Model/LongLive --local-dir longlive_models`), plus the TAE:

    DIR/wan_models/Wan2.1-T2V-1.3B/Wan2.1_VAE.pth
    DIR/wan_models/Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth
    DIR/wan_models/Wan2.1-T2V-1.3B/google/umt5-xxl/tokenizer.json
    DIR/longlive_models/models/longlive_base.pt
    DIR/longlive_models/models/lora.pt
    DIR/taehv/taew2_1.pth                       (only for --decoder tae)

Only these files are fetched (about 20 GB), not the whole repositories (the Wan DiT safetensors, 5.7 GB,
are fully overwritten by longlive_base.pt and not needed). `hf_hub_download` resumes partial downloads and
shows progress bars; files already present are skipped without any network call. Before the first fetch the
Hub is asked once, without retries, whether it answers: a machine without network (or behind a proxy or mirror
answering 5xx) gets one line saying which files to copy in by hand and where, instead of a minute of retries.
A failed fetch leaves no empty folders behind (partial downloads are kept to resume).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B"
LONGLIVE_REPO = "Efficient-Large-Model/LongLive-1.3B"
TAE_REPO = "lightx2v/Autoencoders"
DOWNLOAD_COMMAND = "longlive-rtc download --dir {dir}"
PROBE_TIMEOUT_S = 10.0
UNAVAILABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})  # answers huggingface_hub retries for a minute


@dataclass(frozen=True)
class WeightFile:
    """One file of one Hub repository, stored at `<weights dir>/<local_dir>/<filename>`."""

    role: str  # vae | t5 | tokenizer | base | lora | tae
    repo_id: str
    filename: str  # path inside the repository
    local_dir: str  # folder under the weights directory that mirrors the repository
    approx_bytes: int

    def path(self, weights_dir: str | Path) -> Path:
        return Path(weights_dir) / self.local_dir / self.filename


WAN_DIR = "wan_models/Wan2.1-T2V-1.3B"
WEIGHT_FILES: tuple[WeightFile, ...] = (
    WeightFile("vae", WAN_REPO, "Wan2.1_VAE.pth", WAN_DIR, 508_000_000),
    WeightFile("t5", WAN_REPO, "models_t5_umt5-xxl-enc-bf16.pth", WAN_DIR, 11_361_000_000),
    WeightFile("tokenizer", WAN_REPO, "google/umt5-xxl/tokenizer.json", WAN_DIR, 16_800_000),
    WeightFile("base", LONGLIVE_REPO, "models/longlive_base.pt", "longlive_models", 5_676_000_000),
    WeightFile("lora", LONGLIVE_REPO, "models/lora.pt", "longlive_models", 2_800_000_000),
    WeightFile("tae", TAE_REPO, "taew2_1.pth", "taehv", 22_700_000),
)
FILES_BY_ROLE = {f.role: f for f in WEIGHT_FILES}


def needed_files(include_tae: bool = True) -> list[WeightFile]:
    """The files to fetch; the TAE decoder's weights are optional (only `--decoder tae` uses them)."""
    return [f for f in WEIGHT_FILES if include_tae or f.role != "tae"]


def missing_files(weights_dir: str | Path, include_tae: bool = True) -> list[WeightFile]:
    return [f for f in needed_files(include_tae) if not f.path(weights_dir).is_file()]


def download_command(weights_dir: str | Path) -> str:
    return DOWNLOAD_COMMAND.format(dir=weights_dir)


class DownloadError(RuntimeError):
    """A file could not be fetched from the Hub."""


def where_by_hand(files: list[WeightFile], weights_dir: str | Path) -> str:
    """Where each file goes, grouped by the repository it comes from (one line)."""
    by_repo: dict[str, list[str]] = {}
    for file in files:
        by_repo.setdefault(file.repo_id, []).append(str(file.path(weights_dir)))
    return "; ".join(f"{', '.join(paths)} (from {repo})" for repo, paths in by_repo.items())


def offline_message(files: list[WeightFile], weights_dir: Path, why: str) -> str:
    """What to do when the Hub cannot be reached: the files to copy in by hand, and where (one line)."""
    tae = "; the TAE file is only for --decoder tae (--no-tae skips it)" if any(f.role == "tae" for f in files) else ""
    return (
        f"cannot reach the Hugging Face Hub ({why}). Without network, copy the files in by hand: "
        f"{where_by_hand(files, weights_dir)}{tae}; then `{download_command(weights_dir)}` checks them. "
        "Behind a proxy or with a mirror, set HTTPS_PROXY or HF_ENDPOINT."
    )


def hub_unreachable(file: WeightFile) -> str | None:
    """Why the Hub cannot be reached for ``file`` (one request, no retries), or None when it answers at all."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    try:
        get_hf_file_metadata(hf_hub_url(file.repo_id, file.filename), timeout=PROBE_TIMEOUT_S)
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in UNAVAILABLE_STATUSES:
            return f"it answered {status} {getattr(error.response, 'reason_phrase', '')}".rstrip()
        return None  # it answered (e.g. 401 for a missing token, 404): the fetch reports what it said
    except Exception as error:  # no route, no name, refused, timed out, offline mode
        return one_line(error)
    return None


def one_line(error: BaseException) -> str:
    """``Type: message`` on one line, of the deepest cause where the error wraps another (huggingface_hub's
    "cannot find the requested files in the local cache" wraps the answer that says why)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return " ".join(f"{type(error).__name__}: {error}".split())


def remove_empty_caches(files: list[WeightFile], weights_dir: Path) -> None:
    """Drop the Hub's ``.cache`` folders that a failed fetch left holding no partial download or metadata."""
    for local_dir in {weights_dir / f.local_dir for f in files}:
        cache = local_dir / ".cache"
        if cache.is_dir() and not any(
            p.suffix in (".incomplete", ".metadata") and p.stat().st_size for p in cache.rglob("*") if p.is_file()
        ):
            shutil.rmtree(cache)
        for folder in (local_dir, *local_dir.parents):  # and the folders it made, if they stayed empty
            if folder == weights_dir or not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()


def hub_download(file: WeightFile, weights_dir: Path) -> Path:
    """Fetch one file with huggingface_hub (resumable, with a progress bar); returns its local path."""
    from huggingface_hub import hf_hub_download

    local = hf_hub_download(repo_id=file.repo_id, filename=file.filename, local_dir=weights_dir / file.local_dir)
    return Path(local)


def download_weights(
    dest: str | Path,
    include_tae: bool = True,
    *,
    force: bool = False,
    fetch: Callable[[WeightFile, Path], Path] = hub_download,
    unreachable: Callable[[WeightFile], str | None] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch every needed file into `dest` (created if needed) and return `dest`.

    Present files are skipped unless `force`; an interrupted run resumes where it stopped. `fetch` is the
    per-file downloader (the Hub by default), `unreachable` the check made once before it (the Hub's when
    fetching from the Hub).
    """
    dest = Path(dest).expanduser()
    todo = needed_files(include_tae) if force else missing_files(dest, include_tae)
    if not todo:
        log(f"all weight files present in {dest}")
        return dest
    check = unreachable or (hub_unreachable if fetch is hub_download else None)
    why = check(todo[0]) if check else None
    if why is not None:
        raise DownloadError(offline_message(todo, dest, why))
    made = [folder for folder in (dest, *dest.parents) if not folder.exists()]  # removed again if left empty
    dest.mkdir(parents=True, exist_ok=True)
    total_gb = sum(f.approx_bytes for f in todo) / 1e9
    log(f"fetching {len(todo)} file(s), about {total_gb:.1f} GB, into {dest}")
    for file in todo:
        log(f"  {file.repo_id}/{file.filename} -> {file.path(dest)}")
        try:
            local = fetch(file, dest)
        except Exception as error:
            remove_empty_caches(todo, dest)
            for folder in made:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise DownloadError(
                f"could not download {file.filename} from {file.repo_id}: {one_line(error)}. "
                f"Check the network (and HF_TOKEN / HF_ENDPOINT if you use them), then run "
                f"`{download_command(dest)}` again: finished files are kept, partial ones resume."
            ) from error
        if Path(local).resolve() != file.path(dest).resolve() or not file.path(dest).is_file():
            raise DownloadError(f"{file.filename} landed at {local}, expected {file.path(dest)}")
    return dest
