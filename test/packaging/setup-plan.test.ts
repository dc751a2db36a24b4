/**
 * Set-up's planning step (`node scripts/setup.js --for <command> --plan`) in a simulated fresh
 * environment: the reference Python (TORCH_LORA_PYTHON) is a stand-in that cannot import torch,
 * and on Debian, dpkg-query on PATH answers as the real one would without python3-torch.
 * The plan installs nothing: apt-get, apt and sudo on PATH are stand-ins that record any call.
 * The decision itself is also checked on the machines this one is not (not root, not Debian, no
 * libtorch), from facts given to it.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { makeTempDir } from "../helpers/temp";

const ROOT = path.resolve(__dirname, "../..");
const { planSetup } = require(path.join(ROOT, "scripts/lib/setup-plan.js"));
const { packagesFor } = require(path.join(ROOT, "scripts/lib/system-packages.js"));

// What this machine is, found here rather than by the code under test.
const DEBIAN = fs.existsSync("/etc/debian_version");
const ROOT_USER = process.getuid?.() === 0;

interface Plan {
  command: string;
  apt: string[];
  notices: string[];
  error: string | null;
  facts: { python: string; pythonHasTorch: boolean | null };
}

let tmp: string;
let bin: string;
let calls: string;

/** An executable shell script at <tmp>/<name> that appends "<name> <args>" to the calls file, then runs `tail`. */
function recorder(file: string, tail: string): string {
  fs.writeFileSync(file, `#!/bin/sh\necho "${path.basename(file)} $*" >> ${JSON.stringify(calls)}\n${tail}\n`, { mode: 0o755 });
  return file;
}

function recordedCalls(): string[] {
  return fs.existsSync(calls) ? fs.readFileSync(calls, "utf8").trim().split("\n").filter(Boolean) : [];
}

/** Runs set-up's planning step with `python` as the reference Python; returns its exit status, plan and stderr. */
function plan(args: string[], python: string): { status: number | null; plan: Plan | null; err: string } {
  const env = { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}`, TORCH_LORA_PYTHON: python };
  const r = spawnSync(process.execPath, [path.join(ROOT, "scripts/setup.js"), ...args], { cwd: ROOT, env, encoding: "utf8", timeout: 120000 });
  return { status: r.status, plan: r.status === 0 ? (JSON.parse(r.stdout) as Plan) : null, err: r.stderr };
}

beforeAll(() => {
  tmp = makeTempDir("torch-lora-setup-plan-");
  bin = path.join(tmp, "bin");
  calls = path.join(tmp, "calls.log");
  fs.mkdirSync(bin);
  for (const tool of ["apt-get", "apt", "sudo"]) recorder(path.join(bin, tool), "exit 0");
  const dpkgQuery = spawnSync("sh", ["-c", "command -v dpkg-query"], { encoding: "utf8" }).stdout.trim();
  if (dpkgQuery) {
    fs.writeFileSync(path.join(bin, "dpkg-query"), `#!/bin/sh\n${dpkgQuery} "$@" | grep -v '^python3-torch '\n`, { mode: 0o755 });
  }
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeEach(() => fs.rmSync(calls, { force: true }));

describe("node scripts/setup.js --plan, where the reference Python cannot import torch", () => {
  let noTorch: string;
  beforeAll(() => {
    noTorch = recorder(path.join(tmp, "python-without-torch"), `echo "ModuleNotFoundError: No module named 'torch'" >&2\nexit 1`);
  });

  test.each([
    ["test", "the PyTorch cross-checks of `npm test`"],
    ["bench", "the PyTorch baseline of `npm run bench`"],
  ])(
    "--for %s plans python3-torch with apt as root on Debian, else says which comparisons are skipped and the command that enables them",
    (command, comparisons) => {
      const r = plan(["--for", command, "--plan"], noTorch);
      expect(r.err).toBe("");
      expect(r.plan!.command).toBe(command);
      expect(r.plan!.facts).toMatchObject({ python: noTorch, pythonHasTorch: false });
      if (DEBIAN && ROOT_USER) {
        expect(r.plan!.apt).toContain("python3-torch");
        expect(r.plan!.notices).toEqual([]);
      } else {
        expect(r.plan!.apt).toEqual([]);
        const notice = r.plan!.notices.find((n) => n.includes("cannot import torch"));
        expect(notice).toContain(`${noTorch} cannot import torch, so ${comparisons}`);
        // A Python of one's own gets torch from pip (Debian's python3-torch serves /usr/bin/python3 alone).
        expect(notice).toContain(`Enable them with: ${noTorch} -m pip install torch`);
      }
      // The stand-in Python was asked, and nothing was installed.
      expect(recordedCalls()).toEqual(["python-without-torch -c import torch"]);
    },
  );

  test("--for demo neither starts the reference Python nor plans python3-torch", () => {
    const r = plan(["--for", "demo", "--plan"], noTorch);
    expect(r.plan!.facts.pythonHasTorch).toBeNull();
    expect(r.plan!.apt).not.toContain("python3-torch");
    expect(r.plan!.notices.join("\n")).not.toContain("torch");
    expect(recordedCalls()).toEqual([]);
  });

  test("no --for is --for demo; --for with an unknown command is refused, naming the choices", () => {
    const bad = plan(["--for", "tests", "--plan"], noTorch);
    expect(bad.status).toBe(1);
    expect(bad.err).toContain('--for: expected one of demo, test, bench (the npm script set-up runs for), got "tests"');
    // Refused before anything was started.
    expect(recordedCalls()).toEqual([]);
    expect(plan(["--plan"], noTorch).plan!.command).toBe("demo");
    expect(plan(["--for=bench", "--plan"], noTorch).plan!.command).toBe("bench");
  });
});

test("where the reference Python imports torch, --for test plans no python3-torch and says nothing of it", () => {
  const withTorch = recorder(path.join(tmp, "python-with-torch"), "exit 0");
  const r = plan(["--for", "test", "--plan"], withTorch);
  expect(r.plan!.facts.pythonHasTorch).toBe(true);
  expect(r.plan!.apt).not.toContain("python3-torch");
  expect(r.plan!.notices.join("\n")).not.toContain("torch");
  expect(recordedCalls()).toEqual(["python-with-torch -c import torch"]);
});

describe("the plan on other machines (facts given)", () => {
  const ALL = packagesFor();
  const debianLibtorch = { torchDir: "/usr/lib/x86_64-linux-gnu/cmake/Torch", source: "system" };
  const facts = (over: object) => ({
    debian: true,
    root: true,
    libtorch: debianLibtorch,
    installed: ALL,
    python: "/usr/bin/python3",
    pythonHasTorch: false,
    ...over,
  });

  test("a fresh Debian as root: everything the command needs, in one apt-get call; python3-torch only for test and bench, clang-format and python3-venv only for test", () => {
    const fresh = facts({ libtorch: null, installed: [] });
    const testOnly = ["clang-format", "python3-venv"];
    expect(planSetup("test", fresh)).toEqual({ command: "test", apt: ALL, notices: [], error: null });
    expect(planSetup("bench", fresh).apt).toEqual(ALL.filter((p: string) => !testOnly.includes(p)));
    expect(planSetup("demo", { ...fresh, pythonHasTorch: null }).apt).toEqual(ALL.filter((p: string) => p !== "python3-torch" && !testOnly.includes(p)));
    expect(planSetup("test", facts({ pythonHasTorch: true })).apt).toEqual([]);
  });

  test("Debian without root: nothing installed; the skipped comparisons named once, with the apt command for /usr/bin/python3", () => {
    const p = planSetup("test", facts({ root: false, installed: ALL.filter((n: string) => n !== "python3-torch") }));
    expect(p.apt).toEqual([]);
    expect(p.error).toBeNull();
    expect(p.notices).toEqual([
      "/usr/bin/python3 cannot import torch, so the PyTorch cross-checks of `npm test` and its rehearsal of scripts/gpu-check.sh will be skipped. Enable them with: sudo apt-get install python3-torch",
    ]);
  });

  test("not Debian: the pip command for the reference Python, and no apt", () => {
    const p = planSetup(
      "bench",
      facts({ debian: false, root: true, installed: [], libtorch: { torchDir: "/opt/libtorch/share/cmake/Torch", source: "LIBTORCH" } }),
    );
    expect(p.apt).toEqual([]);
    expect(p.notices).toEqual([
      "/usr/bin/python3 cannot import torch, so the PyTorch baseline of `npm run bench` will be skipped. Enable them with: /usr/bin/python3 -m pip install torch",
    ]);
  });

  test("no libtorch and no way to install one: an error naming the ways to provide it; Debian's build tools named when missing", () => {
    const p = planSetup("demo", facts({ root: false, libtorch: null, installed: [], pythonHasTorch: null }));
    expect(p.error).toContain("no libtorch found. Provide one of:");
    expect(p.error).toContain("sudo apt-get install libtorch-dev libopenblas0-pthread");
    expect(p.notices).toEqual([
      "cmake, g++, make, ninja-build, ccache, libgloo-dev not installed: the native build may fail (sudo apt-get install cmake g++ make ninja-build ccache libgloo-dev)",
    ]);
  });

  test("a libtorch of one's own (LIBTORCH, /opt/libtorch) on Debian: libtorch-dev is not installed for it", () => {
    const withoutLibs = ALL.filter((p: string) => !p.startsWith("lib"));
    for (const own of [
      { torchDir: "/opt/libtorch/share/cmake/Torch", source: "LIBTORCH" },
      { torchDir: "/opt/libtorch", source: "system" },
    ]) {
      expect(planSetup("demo", facts({ libtorch: own, installed: withoutLibs })).apt).toEqual(["libgloo-dev"]);
    }
    // Debian's own, without OpenBLAS: OpenBLAS is installed as root, named otherwise.
    const noBlas = ALL.filter((p: string) => p !== "libopenblas0-pthread");
    expect(planSetup("demo", facts({ installed: noBlas })).apt).toEqual(["libopenblas0-pthread"]);
    expect(planSetup("demo", facts({ installed: noBlas, root: false })).notices).toEqual([
      "libopenblas0-pthread not installed: Debian's libtorch then runs matmuls on reference BLAS, 35x slower (sudo apt-get install libopenblas0-pthread)",
    ]);
  });

  test("python3-torch installed, but the reference Python is another one without torch: no apt-get (it cannot help); pip named", () => {
    const p = planSetup("test", facts({ python: "/opt/venv/bin/python" }));
    expect(p.apt).toEqual([]);
    expect(p.notices).toEqual([
      "/opt/venv/bin/python cannot import torch, so the PyTorch cross-checks of `npm test` and its rehearsal of scripts/gpu-check.sh will be skipped. Enable them with: /opt/venv/bin/python -m pip install torch",
    ]);
  });
});

test(".ci/run installs exactly the shared list, which holds what CI builds and compares with", () => {
  // The lines of .ci/run that make its package list, run as they are.
  const r = spawnSync(
    "bash",
    ["-c", 'set -euo pipefail; eval "$(sed -n "/^package_list=/,/^read -r -a apt_packages/p" .ci/run)"; printf "%s\\n" "${apt_packages[@]}"'],
    {
      cwd: ROOT,
      encoding: "utf8",
    },
  );
  expect(r.stderr).toBe("");
  const ciPackages = r.stdout.trim().split("\n");
  expect(ciPackages).toEqual(packagesFor());
  for (const p of ["libtorch-dev", "libopenblas0-pthread", "python3-torch", "ccache", "cmake", "g++", "ninja-build", "make", "libgloo-dev"])
    expect(ciPackages).toContain(p);
  expect(packagesFor(["compare"])).toEqual(["python3-torch"]);
  expect(fs.readFileSync(path.join(ROOT, ".ci/run"), "utf8")).not.toMatch(/apt_packages=\(/);
});
