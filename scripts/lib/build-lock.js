"use strict";
// One native build at a time per package folder: parallel processes (jest workers, several
// programs started at once) that each find no addon must not run cmake-js in the same build/.
const fs = require("fs");
const path = require("path");

const POLL_MS = 500;

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** True while process `pid` exists (EPERM: it exists but belongs to another user). */
function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === "EPERM";
  }
}

/**
 * Runs `fn` holding <root>/build.lock (a folder: mkdir is atomic). A lock left by a process
 * that no longer exists is taken over; one held longer than `timeoutMs` is an error.
 */
function withBuildLock(root, fn, { timeoutMs = 30 * 60 * 1000, log = () => {} } = {}) {
  const lock = path.join(root, "build.lock");
  const owner = path.join(lock, "pid");
  const started = Date.now();
  let announced = false;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (err) {
      if (err.code !== "EEXIST") throw err;
    }
    // An empty pid file is a lock being taken right now: wait like for a live owner.
    const pid = Number(fs.existsSync(owner) ? fs.readFileSync(owner, "utf8") : "");
    if (pid > 0 && !isAlive(pid)) {
      fs.rmSync(lock, { recursive: true, force: true });
      continue;
    }
    if (Date.now() - started > timeoutMs) {
      throw new Error(`another build of ${root} still holds ${lock} after ${Math.round(timeoutMs / 1000)} s of waiting; remove that folder if no build runs`);
    }
    if (!announced) log(`waiting for the build that process ${pid || "?"} is running in ${root}`);
    announced = true;
    sleep(POLL_MS);
  }
  fs.writeFileSync(owner, String(process.pid));
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

module.exports = { withBuildLock, isAlive };
