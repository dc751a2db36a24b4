/**
 * scripts/gpu-check.sh, rehearsed on this machine: from a copy of the repository, with no node on
 * PATH (a Node folder is handed to it, as on a GPU machine without Node), it builds the addon with
 * node-gyp against Python's libtorch and runs the CUDA tests on the CPU and the small benchmark.
 * A GPU run is rare; this keeps the script, the node-gyp build and the CUDA tests working meanwhile.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { describeUnless } from "../helpers/skip";
import { makeTempDir } from "../helpers/temp";

const ROOT = path.resolve(__dirname, "../..");
const NODE_HEADERS = path.resolve(process.execPath, "../../include/node");
const NODE_TOOLS = new Set(["node", "nodejs", "npm", "npx", "corepack"]);

function sh(cmd: string, args: string[], cwd = ROOT): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.status}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

function skipReason(): string | null {
  if (!fs.existsSync(path.join(NODE_HEADERS, "common.gypi"))) return `this Node has no headers at ${NODE_HEADERS}`;
  if (spawnSync("/usr/bin/python3", ["-c", "import torch"]).status !== 0) return "/usr/bin/python3 cannot import torch";
  for (const tool of ["make", "g++", "git"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  return null;
}

/** A bin folder with every program on PATH except Node's own. */
function binWithoutNode(dir: string): string {
  fs.mkdirSync(dir);
  for (const from of (process.env.PATH ?? "").split(":").filter((d) => fs.existsSync(d))) {
    for (const name of fs.readdirSync(from)) {
      if (NODE_TOOLS.has(name) || fs.existsSync(path.join(dir, name))) continue;
      fs.symlinkSync(path.join(from, name), path.join(dir, name));
    }
  }
  return dir;
}

const reason = skipReason();
if (reason) process.stderr.write(`[packaging] SKIPPED the gpu-check.sh rehearsal: ${reason}\n`);
const describeRehearsal = (title: string, body: () => void) => describeUnless(reason, title, body);

describeRehearsal("scripts/gpu-check.sh --rehearse, from a copy of the repository without node on PATH", () => {
  let work: string;
  let copy: string;
  let run: { status: number | null; out: string };

  beforeAll(() => {
    work = makeTempDir("torch-lora-gpu-check-");
    copy = path.join(work, "repo");
    // The tracked and new files, as a copy made with `git ls-files` or `git archive` would hold.
    const files = sh("git", ["ls-files", "-co", "--exclude-standard", "-z"])
      .split("\0")
      .filter((f) => f && fs.existsSync(path.join(ROOT, f)));
    for (const f of files) {
      fs.mkdirSync(path.dirname(path.join(copy, f)), { recursive: true });
      fs.copyFileSync(path.join(ROOT, f), path.join(copy, f));
    }
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(copy, "node_modules"));
    // A Node folder as the official tarball lays it out: bin/node and include/node.
    const nodeHome = path.join(work, "node");
    fs.mkdirSync(path.join(nodeHome, "bin"), { recursive: true });
    fs.mkdirSync(path.join(nodeHome, "include"));
    fs.symlinkSync(process.execPath, path.join(nodeHome, "bin/node"));
    fs.symlinkSync(NODE_HEADERS, path.join(nodeHome, "include/node"));
    // The 8-minute budget is for a 16-core GPU machine; a 2-core runner may take longer to build.
    const env = {
      PATH: binWithoutNode(path.join(work, "bin")),
      HOME: os.homedir(),
      PYTHON: "/usr/bin/python3",
      GPU_CHECK_OUT: path.join(work, "out"),
      GPU_CHECK_BUDGET: "1500",
      GPU_CHECK_BUILD_TIMEOUT: "900",
    };
    const r = spawnSync("bash", ["scripts/gpu-check.sh", "--rehearse", nodeHome], {
      cwd: copy,
      env,
      encoding: "utf8",
      timeout: 1_500_000,
      maxBuffer: 64 << 20,
    });
    run = { status: r.status, out: `${r.stdout}${r.stderr}` };
  }, 1_600_000);

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test("node really is hidden from PATH", () => {
    expect(spawnSync("sh", ["-c", "command -v node"], { env: { PATH: path.join(work, "bin") } }).status).not.toBe(0);
  });

  test("the script exits 0 after its build, tests and benchmark", () => {
    expect({ status: run.status, tail: run.status === 0 ? "" : run.out.slice(-3000) }).toEqual({ status: 0, tail: "" });
    expect(run.out).toContain("rehearsal: the CUDA tests run on the CPU");
    expect(run.out).toMatch(/tests exit 0, benchmark exit 0/);
  });

  test("the node-gyp build is linked against the libtorch the cmake-js build uses", () => {
    const gyp = JSON.parse(
      sh(process.execPath, ["-p", `JSON.stringify(require(${JSON.stringify(path.join(copy, "build/Release/torch_lora.node"))}).buildInfo())`]),
    );
    const cmake = JSON.parse(
      sh(process.execPath, ["-p", `JSON.stringify(require(${JSON.stringify(path.join(ROOT, "build/Release/torch_lora.node"))}).buildInfo())`]),
    );
    expect(gyp).toEqual(cmake);
    expect(run.out).toContain(`buildInfo ${JSON.stringify(gyp)}`);
  });

  test("the CUDA tests ran (on the CPU), none skipped for want of a GPU, and all passed", () => {
    expect(run.out).not.toContain("[cuda] SKIPPED");
    for (const file of fs.readdirSync(path.join(ROOT, "test/cuda"))) expect(run.out).toContain(`PASS test/cuda/${file}`);
    const summary = /Tests:\s+(?:(\d+) skipped, )?(\d+) passed, (\d+) total/.exec(run.out);
    expect(summary).not.toBeNull();
    const [, skipped = "0", passed, total] = summary!;
    expect(Number(passed) + Number(skipped)).toBe(Number(total));
    expect(Number(passed)).toBeGreaterThan(50);
  });

  test("the benchmark printed a row per case with both timings", () => {
    const rows = run.out.split("\n").filter((l) => /^\d+\s+64\s+4\s+float32\s+[\d.]+ \| [\d.]+\s+[\d.]+ \| [\d.]+/.test(l));
    expect(rows.length).toBe(2);
  });
});
