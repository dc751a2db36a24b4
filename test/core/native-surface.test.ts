/**
 * The native surface is declared once, in the NativeBinding interface of lib/binding.ts: this
 * compares that declaration with what the addon really exports, both ways. The declared names
 * are read from the source with the TypeScript compiler API (types do not exist at run time).
 */
import * as fs from "fs";
import * as path from "path";
import { spawnSync } from "child_process";
import * as ts from "typescript";
import { addonPath, native } from "../../lib/binding";
import { itUnless } from "../helpers/skip";

const ROOT = path.resolve(__dirname, "../..");

/** The member names of `interface name` in the TypeScript file `file` (extended interfaces not followed). */
function interfaceMembers(file: string, name: string): string[] {
  const source = ts.createSourceFile(file, fs.readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const found = source.statements.find((s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === name);
  if (!found) throw new Error(`${file} declares no interface ${name}`);
  return found.members.map((m) => {
    if (!m.name || !(ts.isIdentifier(m.name) || ts.isStringLiteral(m.name))) {
      throw new Error(`${name} in ${file}: a member without a plain name (an index signature?): ${m.getText(source)}`);
    }
    return m.name.text;
  });
}

/** Names in `a` that are not in `b`, sorted. */
const missingFrom = (a: Iterable<string>, b: Iterable<string>): string[] => {
  const inB = new Set(b);
  return [...new Set(a)].filter((x) => !inB.has(x)).sort();
};

// The addon as loaded (not the wrapped `native`), in this process: require caches it by path.
const rawAddon = require(addonPath) as object;
const declared = interfaceMembers(path.join(ROOT, "lib/binding.ts"), "NativeBinding");
const benchDeclared = interfaceMembers(path.join(ROOT, "bench/addon.ts"), "BenchBinding");

describe("the native surface (lib/binding.ts NativeBinding)", () => {
  it("declares each name once and has no index signature", () => {
    expect(declared.length).toBeGreaterThan(100);
    expect(declared.filter((n, i) => declared.indexOf(n) !== i)).toEqual([]);
  });

  it("declares every entry point the addon exports", () => {
    expect(missingFrom(Object.keys(rawAddon), declared)).toEqual([]);
  });

  it("declares no entry point the addon lacks", () => {
    expect(missingFrom(declared, Object.keys(rawAddon))).toEqual([]);
  });

  it("wraps every export in `native` (lib/binding.ts) and only those", () => {
    expect(Object.keys(native).sort()).toEqual(Object.keys(rawAddon).sort());
    for (const name of Object.keys(native)) expect(typeof Reflect.get(native, name)).toBe("function");
  });

  it("ships no benchmark entry point: none in the addon loaded, and binding.gyp (the prebuild path) compiles no bench.cc", () => {
    expect(Object.keys(rawAddon).filter((n) => n.startsWith("bench"))).toEqual([]);
    expect(declared.filter((n) => n.startsWith("bench"))).toEqual([]);
    // binding.gyp's own source-list command, run as node-gyp runs it.
    const gyp = fs.readFileSync(path.join(ROOT, "binding.gyp"), "utf8");
    const command = /"<!@\(node -p \\"(.+?)\\"\)"/.exec(gyp);
    expect(command).not.toBeNull();
    const listed = spawnSync(process.execPath, ["-p", command![1].replace(/\\"/g, '"')], { cwd: ROOT, encoding: "utf8" });
    expect(listed.status).toBe(0);
    const sources = listed.stdout.trim().split(/\s+/);
    expect(sources).toContain("native/addon.cc");
    expect(sources.filter((s) => s.includes("bench"))).toEqual([]);
  });

  it("types buildInfo() with every field native/addon.cc sets, and no other", () => {
    const fields = interfaceMembers(path.join(ROOT, "lib/binding.ts"), "BuildInfo");
    const addonCc = fs.readFileSync(path.join(ROOT, "native/addon.cc"), "utf8");
    const setInCc = [...addonCc.matchAll(/out\.Set\("(\w+)"/g)].map((m) => m[1]);
    expect(setInCc.length).toBeGreaterThan(5);
    expect(missingFrom(setInCc, fields)).toEqual([]);
    expect(missingFrom(fields, setInCc)).toEqual([]);
    // And this build's own answer has only declared fields.
    expect(missingFrom(Object.keys(native.buildInfo()), fields)).toEqual([]);
  });
});

const BENCH_ADDON = path.join(ROOT, "build/Release/torch_lora_bench.node");

describe("the benchmark addon (bench/addon.ts BenchBinding)", () => {
  itUnless(
    fs.existsSync(BENCH_ADDON) ? null : "no benchmark addon built (node scripts/setup.js)",
    "exports the shipped surface plus exactly the declared floors",
    () => {
      // A child process: loading a second copy of the addon here would mix two libraries' handles.
      const r = spawnSync(process.execPath, ["-p", `JSON.stringify(Object.keys(require(${JSON.stringify(BENCH_ADDON)})))`], { encoding: "utf8" });
      expect(r.status).toBe(0);
      const exported: string[] = JSON.parse(r.stdout);
      expect(benchDeclared.every((n) => n.startsWith("bench"))).toBe(true);
      expect(missingFrom(exported, [...declared, ...benchDeclared])).toEqual([]);
      expect(missingFrom([...declared, ...benchDeclared], exported)).toEqual([]);
    },
  );
});
