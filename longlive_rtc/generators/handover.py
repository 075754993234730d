"""The decoder on another device than the DiT (``--decoder-device``): a block's latents handed over by a copy.

A block's latents are small (3 x 16 x 60 x 104 bf16: 0.6 MB at 832x480), so a plain copy moves them: device
to device where the two GPUs can reach each other's memory (NVLink or PCIe peer access), else through a
pinned host buffer. No collective (NCCL) is involved. The copy is queued behind the block's DiT forwards and
ahead of its decode without stalling either device: the decoder's stream waits for the copy on the GPU, the
DiT's stream never waits for a decode, so the DiT device is free for the next request (another session's
block on a GPU worker) while this one decodes on the other device.
"""

from __future__ import annotations

import torch

MODES = ("auto", "peer", "host")


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a module without any)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class LatentHandover:
    """Copies latents from ``source`` (the DiT's device) to ``target`` (the decoder's), stream-ordered on CUDA.

    ``send`` is called on the thread that queued the DiT work (its current stream on ``source`` is the one the
    latents were made on); the tensor it returns is ready on ``stream`` (None off CUDA): the decoder's stream
    waits for ``stream`` before using it.
    """

    def __init__(
        self, source: torch.device | str, target: torch.device | str, mode: str = "auto",
        stream: torch.cuda.Stream | None = None,
    ) -> None:  # fmt: skip
        if mode not in MODES:
            raise ValueError(f"handover mode must be one of {', '.join(MODES)}")
        self.source, self.target = torch.device(source), torch.device(target)
        cuda = self.source.type == "cuda" and self.target.type == "cuda"
        if mode == "auto":
            peer = cuda and torch.cuda.can_device_access_peer(_index(self.source), _index(self.target))
            mode = "peer" if peer or not cuda else "host"
        self.mode = mode
        self.stream = (stream or torch.cuda.Stream(self.target)) if self.target.type == "cuda" else None
        self._staging: torch.Tensor | None = None  # host mode: pinned buffer, reused block after block
        self._read: torch.cuda.Event | None = None  # host mode: the staging buffer was read by the last copy
        self.blocks = 0  # latents handed over

    def fork(self) -> LatentHandover:
        """Another session's handover: the same devices, mode and copy stream, its own staging buffer."""
        return LatentHandover(self.source, self.target, self.mode, self.stream)

    def send(self, latents: torch.Tensor) -> torch.Tensor:
        """``latents`` on the target device (a new tensor: the source's buffer may be reused at once)."""
        self.blocks += 1
        if self.source.type != "cuda" or self.target.type != "cuda":
            return self._plain(latents)
        if self.mode == "host":
            return self._through_host(latents)
        with torch.cuda.stream(self.stream):  # the target's current stream: the copy's barrier does not wait
            out = torch.empty(latents.shape, dtype=latents.dtype, device=self.target)  # for the decoder's stream
            out.copy_(latents, non_blocking=True)  # on the source's stream, after the DiT; the target waits
        return out

    def _plain(self, latents: torch.Tensor) -> torch.Tensor:
        """A copy with at least one side on the CPU (CPU runs and tests: synchronous)."""
        if self.mode == "host" or self.target.type == "cpu":
            staging = self._staging_like(latents, pin=False)
            staging.copy_(latents)
            return staging.to(self.target, copy=True)
        return latents.to(self.target, copy=True)

    def _through_host(self, latents: torch.Tensor) -> torch.Tensor:
        source_stream = torch.cuda.current_stream(self.source)
        staging = self._staging_like(latents, pin=True)
        if self._read is not None:
            source_stream.wait_event(self._read)  # the last block's upload has read the buffer
        staging.copy_(latents, non_blocking=True)
        written = torch.cuda.Event()
        written.record(source_stream)
        assert self.stream is not None
        self.stream.wait_event(written)
        with torch.cuda.stream(self.stream):
            out = torch.empty(latents.shape, dtype=latents.dtype, device=self.target)
            out.copy_(staging, non_blocking=True)
            self._read = torch.cuda.Event()
            self._read.record(self.stream)
        return out

    def _staging_like(self, latents: torch.Tensor, pin: bool) -> torch.Tensor:
        staging = self._staging
        if staging is None or staging.shape != latents.shape or staging.dtype != latents.dtype:
            staging = self._staging = torch.empty(latents.shape, dtype=latents.dtype, pin_memory=pin)
            self._read = None
        return staging


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def place_decoder(generator, device: torch.device | str, mode: str = "auto") -> None:
    """Move a LongLiveGenerator's decoder to ``device`` and hand each block's latents over to it."""
    target = torch.device(device)
    generator.decoder.model.to(target)
    generator.handover = LatentHandover(generator.device, target, mode)
    cuda = target.type == "cuda"
    generator._side = torch.cuda.Stream(target) if cuda else None
    generator._host = torch.empty(generator._host.shape, dtype=torch.uint8, pin_memory=cuda)
