"""Create a session over HTTP, join it as a viewer with its viewer token, read frames and events, delete it.

Usage: python examples/receive_frames.py http://localhost:8080 API_KEY (the key `serve` printed).
"""

import asyncio
import sys

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription


async def receive_frames(url: str, api_key: str, count: int = 30) -> list[np.ndarray]:
    async with aiohttp.ClientSession(raise_for_status=True) as http:
        # 1. A session that starts at once with two prompts (the API key may create sessions).
        schedule = [{"timestamp": 0, "prompt": "a red fox in the snow"},
                    {"timestamp": 30, "prompt": "the fox jumps into a lake"}]  # fmt: skip
        body = {"schedule": schedule, "start": True}
        async with http.post(f"{url}/sessions", json=body, headers={"Authorization": f"Bearer {api_key}"}) as r:
            session = await r.json()
        sid, tokens = session["session"], session["tokens"]

        # 2. An offer as a viewer, with the viewer token: video, and the session's events on a data channel.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        channel = pc.createDataChannel("events")
        channel.on("message", print)  # state, progress, prompt_applied: JSON text
        tracks: asyncio.Queue = asyncio.Queue()
        pc.on("track", tracks.put_nowait)
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": "offer", "session": sid, "role": "viewer"}
        viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
        async with http.post(f"{url}/offer", json=offer, headers=viewer) as r:
            answer = await r.json()
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

        # 3. Frames: av.VideoFrame at 15 FPS, 832x480 by default.
        track = await tracks.get()
        frames = [(await track.recv()).to_ndarray(format="rgb24") for _ in range(count)]  # uint8 [H, W, 3]
        await pc.close()
        await http.delete(f"{url}/sessions/{sid}", headers={"Authorization": f"Bearer {tokens['controller']}"})
        return frames


if __name__ == "__main__":
    frames = asyncio.run(receive_frames(sys.argv[1], sys.argv[2]))
    print(f"{len(frames)} frames of {frames[0].shape}")
