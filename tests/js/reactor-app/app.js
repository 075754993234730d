// A Reactor app in local mode against `longlive-rtc serve --auth none --reactor-local`: the seed's three
// prompts at frames 0, 30 and 90, start, then progress on screen. Bundle it with the SDK (esbuild, Vite...).
import { Reactor } from "@reactor-team/js-sdk";

const apiUrl = new URLSearchParams(location.search).get("api") ?? "http://localhost:8080";
const reactor = new Reactor({ modelName: "longlive", local: true, apiUrl });
const video = document.querySelector("video");
const show = (id, text) => (document.getElementById(id).textContent = text);
const messages = [];
window.app = { reactor, messages }; // for the console (and the test)

reactor.on("statusChanged", (status) => show("status", status));
reactor.on("trackReceived", (name, track) => {
  if (name === "main_video") video.srcObject = new MediaStream([track]);
});
reactor.on("message", (message) => {
  messages.push(message); // {type, data}: progress, prompt_applied, state, ack, error
  if (message.type === "progress") show("progress", `frame ${message.data.current_start_frame}`);
  if (message.type === "prompt_applied") show("prompt", `${message.data.frame}: ${message.data.prompt}`);
  if (message.type === "error") show("prompt", `error ${message.data.code}: ${message.data.message}`);
});

function ready() {
  return new Promise((resolve) => {
    if (reactor.getStatus() === "ready") return resolve();
    const onStatus = (status) => {
      if (status !== "ready") return;
      reactor.off("statusChanged", onStatus);
      resolve();
    };
    reactor.on("statusChanged", onStatus);
  });
}

document.getElementById("go").onclick = async () => {
  await reactor.connect();
  await ready(); // video and data channel up
  await reactor.sendCommand("schedule_prompt", { new_prompt: "A red fox runs through snow", timestamp: 0 });
  await reactor.sendCommand("schedule_prompt", { new_prompt: "The fox leaps into a frozen lake", timestamp: 30 });
  await reactor.sendCommand("schedule_prompt", { new_prompt: "Northern lights over the lake", timestamp: 90 });
  await reactor.sendCommand("start", {});
};
document.getElementById("stop").onclick = () => reactor.disconnect(); // POST /stop_session frees the session
