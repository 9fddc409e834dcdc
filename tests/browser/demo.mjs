// Starts `payoff demo` (a month of Acme Outdoor Co., worked, closed and
// served) in the background over a fresh directory and waits until it
// serves: the demo writes `logins.json` (URL, a key per role, the closed
// period, a restricted article) just before it starts serving.
//
//   node demo.mjs start [--dir DIR] [--tickets N]   # prints the logins.json path
//   node demo.mjs stop  [--dir DIR]
//
// The binary is PAYOFF_BIN, else target/debug/payoff of this repository
// (CARGO_TARGET_DIR is honoured).

import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const root = path.resolve(arg("--dir", path.join(repo, "artifacts", "browser")));
const demoDir = path.join(root, "demo");
const pidFile = path.join(root, "demo.pid");
const logFile = path.join(root, "demo.log");
const targetDir = process.env.CARGO_TARGET_DIR || path.join(repo, "target");
const bin = process.env.PAYOFF_BIN || path.join(targetDir, "debug", "payoff");
const tickets = arg("--tickets", "1500");
const deadlineMs = 20 * 60 * 1000;

async function start() {
  fs.mkdirSync(root, { recursive: true });
  const logins = path.join(demoDir, "logins.json");
  const log = fs.openSync(logFile, "w");
  const child = spawn(bin, ["demo", "--tickets", tickets, "--dir", demoDir, "--listen", "127.0.0.1:0"], {
    detached: true,
    stdio: ["ignore", log, log],
  });
  fs.writeFileSync(pidFile, String(child.pid));
  let exited = null;
  child.on("exit", (code) => (exited = code));
  child.unref();
  const started = Date.now();
  // The demo clears its directory first, so an old logins.json never counts.
  while (!(fs.existsSync(logins) && fs.statSync(logins).mtimeMs >= started - 1000)) {
    if (exited !== null) throw new Error(`payoff demo exited with ${exited}:\n${fs.readFileSync(logFile, "utf8")}`);
    if (Date.now() - started > deadlineMs) throw new Error(`payoff demo did not serve within 20 minutes:\n${fs.readFileSync(logFile, "utf8")}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const { url } = JSON.parse(fs.readFileSync(logins, "utf8"));
  const healthy = await fetch(`${url}/healthz`);
  if (!healthy.ok) throw new Error(`${url}/healthz answered ${healthy.status}`);
  process.stdout.write(`${logins}\n`);
}

function stop() {
  if (!fs.existsSync(pidFile)) return;
  const pid = Number(fs.readFileSync(pidFile, "utf8"));
  try {
    process.kill(-pid, "SIGINT");
  } catch {
    try {
      process.kill(pid, "SIGINT");
    } catch {
      // already gone
    }
  }
  fs.rmSync(pidFile);
}

const command = process.argv[2];
if (command === "start") {
  start().catch((e) => {
    console.error(String(e.message || e));
    process.exit(1);
  });
} else if (command === "stop") {
  stop();
} else {
  console.error("usage: node demo.mjs start|stop [--dir DIR] [--tickets N]");
  process.exit(2);
}
