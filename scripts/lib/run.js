"use strict";
// Runs a command with inherited output; throws with the command line when it fails.
const { spawnSync } = require("child_process");

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { stdio: "inherit", ...options });
  if (r.error) throw new Error(`${cmd} could not start: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`command failed (exit ${r.status}): ${cmd} ${args.join(" ")}`);
}

module.exports = { run };
