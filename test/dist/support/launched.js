// A script for `torch-lora launch` tests: prints its pid and torchrun variables as one JSON line,
// then, as TL_LAUNCHED says: "exit" ends with 0; "fail" makes rank 1 exit with code 7 after a
// moment while the other ranks wait for a minute (the launcher must stop them).
"use strict";
const keys = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS"];
const env = Object.fromEntries(keys.map((k) => [k, process.env[k]]));
process.stdout.write(JSON.stringify({ pid: process.pid, args: process.argv.slice(2), ...env }) + "\n");
if (process.env.TL_LAUNCHED === "fail") {
  if (env.RANK === "1") setTimeout(() => process.exit(7), 300);
  else setTimeout(() => {}, 60_000);
}
