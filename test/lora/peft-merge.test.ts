/**
 * The merge of a PEFT adapter into base weights from tensor names alone (lib/lora/peft-merge.ts),
 * called in process: module description from the adapter's keys, the plan against the base keys
 * and shapes, and the merged numbers against W + s·B·A computed by hand in float64.
 */
import { ConfigError, FormatError, Tensor, tensor } from "../../lib";
import type { Dtype } from "../../lib";
import { resolveLoraConfig } from "../../lib/lora/config";
import type { LoraConfig } from "../../lib/lora/config";
import { AdapterModuleInfo, TensorShapeInfo, describeAdapterModules, mergeWeights, planWeightMerge } from "../../lib/lora/peft-merge";
import { patternLayout, unknownLayout } from "../../lib/lora/weight-layout";
import { ErrorCase, itThrowsEach } from "../helpers/errors";

const P = "base_model.model.";
const FILE = "adapter_model.safetensors";
const cfg = (c: LoraConfig = {}) => resolveLoraConfig({ r: 2, loraAlpha: 4, targetModules: "all-linear", ...c });
const info = (name: string, shape: number[], dtype: Dtype | null = "float32"): TensorShapeInfo => ({ name, shape, dtype });
/** The A (r, in) and B (out, r) entries of a Linear module. */
const linearPair = (p: string, r: number, inDim: number, outDim: number): TensorShapeInfo[] => [
  info(`${P}${p}.lora_A.weight`, [r, inDim]),
  info(`${P}${p}.lora_B.weight`, [outDim, r]),
];
const describeOne = (tensors: TensorShapeInfo[], c?: LoraConfig) => describeAdapterModules(cfg(c), tensors, FILE);

/** A described module, for planning tests. */
function mod(path: string, inDim: number, outDim: number, kind: "linear" | "embedding" = "linear"): AdapterModuleInfo {
  return describeOne(
    kind === "linear"
      ? linearPair(path, 2, inDim, outDim)
      : [info(`${P}${path}.lora_embedding_A`, [2, inDim]), info(`${P}${path}.lora_embedding_B`, [outDim, 2])],
  )[0];
}

type M = number[][];
const mm = (a: M, b: M): M => a.map((row) => b[0].map((_, j) => row.reduce((s, v, k) => s + v * b[k][j], 0)));
const tr = (a: M): M => a[0].map((_, j) => a.map((row) => row[j]));
const addScaled = (w: M, d: M, s: number): number[] => w.flatMap((row, i) => row.map((v, j) => v + s * d[i][j]));
const t2 = (rows: M, dtype: Dtype = "float32"): Tensor => tensor(rows, { dtype });

describe("describeAdapterModules", () => {
  test("lists Linear and Embedding modules sorted by path, with rank_pattern, alpha_pattern and their scales", () => {
    const tensors = [
      ...linearPair("m.q", 4, 6, 3),
      info(`${P}emb.lora_embedding_B`, [5, 2], "float16"),
      ...linearPair("b.v", 2, 3, 7),
      info(`${P}emb.lora_embedding_A`, [2, 11], "float16"),
      ...linearPair("c.k", 2, 3, 3),
    ];
    const got = describeOne(tensors, { rankPattern: { q: 4 }, alphaPattern: { "b.v": 6 } });
    expect(got).toEqual([
      {
        path: "b.v",
        kind: "linear",
        r: 2,
        alpha: 6,
        scale: 3,
        keyA: `${P}b.v.lora_A.weight`,
        keyB: `${P}b.v.lora_B.weight`,
        shapeA: [2, 3],
        shapeB: [7, 2],
        dtype: "float32",
      },
      {
        path: "c.k",
        kind: "linear",
        r: 2,
        alpha: 4,
        scale: 2,
        keyA: `${P}c.k.lora_A.weight`,
        keyB: `${P}c.k.lora_B.weight`,
        shapeA: [2, 3],
        shapeB: [3, 2],
        dtype: "float32",
      },
      {
        path: "emb",
        kind: "embedding",
        r: 2,
        alpha: 4,
        scale: 2,
        keyA: `${P}emb.lora_embedding_A`,
        keyB: `${P}emb.lora_embedding_B`,
        shapeA: [2, 11],
        shapeB: [5, 2],
        dtype: "float16",
      },
      {
        path: "m.q",
        kind: "linear",
        r: 4,
        alpha: 4,
        scale: 1,
        keyA: `${P}m.q.lora_A.weight`,
        keyB: `${P}m.q.lora_B.weight`,
        shapeA: [4, 6],
        shapeB: [3, 4],
        dtype: "float32",
      },
    ]);
  });

  test("many modules come back in path order, whatever the file's order", () => {
    const paths = Array.from({ length: 70 }, (_, i) => `layers.${String((i * 37) % 70).padStart(2, "0")}.fc`);
    const got = describeOne(paths.flatMap((p) => linearPair(p, 2, 3, 4))).map((m) => m.path);
    expect(got).toEqual(Array.from({ length: 70 }, (_, i) => `layers.${String(i).padStart(2, "0")}.fc`));
  });

  test("use_rslora scales by alpha / √r", () => {
    const [m] = describeOne(linearPair("fc", 4, 3, 3), { r: 4, loraAlpha: 6, useRslora: true });
    expect(m.scale).toBe(3);
    expect(m.r).toBe(4);
  });

  test("an empty adapter describes no module", () => {
    expect(describeOne([])).toEqual([]);
  });

  const notFactor = (k: string) =>
    `${FILE}: ${JSON.stringify(k)} is not a LoRA factor key (expected ${P}<module>.lora_A.weight, .lora_B.weight, .lora_embedding_A or .lora_embedding_B)`;
  const esc = (s: string) => new RegExp(`^${s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
  const A = (p: string) => `${P}${p}.lora_A.weight`;
  const B = (p: string) => `${P}${p}.lora_B.weight`;
  itThrowsEach([
    [
      "use_dora is refused, pointing at loadAdapter",
      () => describeOne(linearPair("fc", 2, 3, 3), { useDora: true }),
      esc(
        `${FILE}: use_dora = true is not supported by the merge from files (a DoRA merge renormalizes by the magnitude vectors); load the adapter with loadAdapter and call mergeAndUnload()`,
      ),
      ConfigError,
    ],
    [
      "a factor key without base_model.model.",
      () => describeOne([info("model.fc.lora_A.weight", [2, 3])]),
      esc(notFactor("model.fc.lora_A.weight")),
      FormatError,
    ],
    [
      "a base weight key under base_model.model.",
      () => describeOne([...linearPair("fc", 2, 3, 3), info(`${P}fc.weight`, [3, 3])]),
      esc(notFactor(`${P}fc.weight`)),
      FormatError,
    ],
    [
      "a DoRA magnitude vector",
      () => describeOne([...linearPair("fc", 2, 3, 3), info(`${P}fc.lora_magnitude_vector`, [3])]),
      esc(notFactor(`${P}fc.lora_magnitude_vector`)),
      FormatError,
    ],
    [
      "A without B",
      () => describeOne([info(A("fc"), [2, 3])]),
      esc(`${FILE}: module fc needs exactly ${A("fc")} and ${B("fc")}; the file has ${A("fc")}`),
      FormatError,
    ],
    [
      "Linear A with an Embedding A (two keys, no Embedding B)",
      () => describeOne([info(A("fc"), [2, 3]), info(`${P}fc.lora_embedding_A`, [2, 3])]),
      esc(`${FILE}: module fc needs exactly ${P}fc.lora_embedding_A and ${P}fc.lora_embedding_B; the file has ${A("fc")}, ${P}fc.lora_embedding_A`),
      FormatError,
    ],
    [
      "Linear B with an Embedding B (two keys, no Embedding A)",
      () => describeOne([info(B("fc"), [3, 2]), info(`${P}fc.lora_embedding_B`, [3, 2])]),
      esc(`${FILE}: module fc needs exactly ${P}fc.lora_embedding_A and ${P}fc.lora_embedding_B; the file has ${B("fc")}, ${P}fc.lora_embedding_B`),
      FormatError,
    ],
    [
      "three factor keys on one module",
      () => describeOne([...linearPair("fc", 2, 3, 3), info(`${P}fc.lora_embedding_A`, [2, 3]), info(`${P}fc.lora_embedding_B`, [3, 2])]),
      /module fc needs exactly .*; the file has .*lora_A\.weight, .*lora_B\.weight, .*lora_embedding_A, .*lora_embedding_B$/,
      FormatError,
    ],
    [
      "A of rank 2 with B of rank 3",
      () => describeOne([info(A("fc"), [2, 4]), info(B("fc"), [5, 3])]),
      esc(`${FILE}: ${A("fc")} has shape [2, 4] and ${B("fc")} has shape [5, 3]; expected (r, in) and (out, r)`),
      FormatError,
    ],
    [
      "a 1-D A",
      () => describeOne([info(A("fc"), [2]), info(B("fc"), [5, 2])]),
      /has shape \[2\] and .* has shape \[5, 2\]; expected \(r, in\) and \(out, r\)$/,
      FormatError,
    ],
    [
      "a 3-D B whose second dimension is the rank",
      () => describeOne([info(A("fc"), [2, 4]), info(B("fc"), [5, 2, 1])]),
      /has shape \[2, 4\] and .* has shape \[5, 2, 1\]; expected/,
      FormatError,
    ],
    [
      "an A of an unsupported dtype",
      () => describeOne([info(A("fc"), [2, 4], null), info(B("fc"), [5, 2])]),
      esc(`${FILE}: ${A("fc")} has dtype unsupported, expected a floating dtype`),
      FormatError,
    ],
    [
      "an integer B",
      () => describeOne([info(A("fc"), [2, 4]), info(B("fc"), [5, 2], "int64")]),
      esc(`${FILE}: ${B("fc")} has dtype int64, expected a floating dtype`),
      FormatError,
    ],
    [
      "a rank that disagrees with r",
      () => describeOne(linearPair("fc", 3, 4, 5)),
      esc(`${FILE}: ${A("fc")} has rank 3, but the config gives module fc r = 2 (r / rank_pattern)`),
      FormatError,
    ],
    [
      "a rank that disagrees with rank_pattern",
      () => describeOne(linearPair("fc", 2, 4, 5), { rankPattern: { fc: 4 } }),
      esc(`${FILE}: ${A("fc")} has rank 2, but the config gives module fc r = 4 (r / rank_pattern)`),
      FormatError,
    ],
  ]);
});

describe("planWeightMerge", () => {
  const BASE = "base.safetensors";
  const plan = (base: TensorShapeInfo[], modules: AdapterModuleInfo[], layout: Parameters<typeof planWeightMerge>[2] = false) =>
    planWeightMerge(base, modules, layout, BASE).map((p) => [p.module.path, p.baseKey, p.transposed]);

  test("each key style is found, the first that finds every module wins", () => {
    const ms = [mod("model.layers.0.q", 3, 5), mod("model.embed", 7, 4, "embedding")];
    const w = (k: string, s: number[]) => info(k, s);
    expect(plan([w("model.layers.0.q.weight", [5, 3]), w("model.embed.weight", [7, 4])], ms)).toEqual([
      ["model.layers.0.q", "model.layers.0.q.weight", false],
      ["model.embed", "model.embed.weight", true],
    ]);
    expect(plan([w(`${P}model.layers.0.q.weight`, [5, 3]), w(`${P}model.embed.weight`, [7, 4]), w("model.embed.weight", [7, 4])], ms)).toEqual([
      ["model.layers.0.q", `${P}model.layers.0.q.weight`, false],
      ["model.embed", `${P}model.embed.weight`, true],
    ]);
    expect(plan([w("model.model.layers.0.q.weight", [5, 3]), w("model.model.embed.weight", [7, 4])], ms)).toEqual([
      ["model.layers.0.q", "model.model.layers.0.q.weight", false],
      ["model.embed", "model.model.embed.weight", true],
    ]);
    expect(plan([w("layers.0.q.weight", [5, 3]), w("embed.weight", [7, 4])], ms)).toEqual([
      ["model.layers.0.q", "layers.0.q.weight", false],
      ["model.embed", "embed.weight", true],
    ]);
    // Both styles would find every key: the plain one comes first.
    expect(
      plan([w("model.layers.0.q.weight", [5, 3]), w("model.embed.weight", [7, 4]), w("layers.0.q.weight", [5, 3]), w("embed.weight", [7, 4])], ms)[0][1],
    ).toBe("model.layers.0.q.weight");
  });

  test("GPT-2's published keys lack transformer.; Conv1D weights (in, out) are merged transposed", () => {
    const ms = [mod("transformer.h.0.attn.c_attn", 4, 12), mod("transformer.h.0.mlp.c_fc", 4, 16)];
    expect(plan([info("h.0.attn.c_attn.weight", [4, 12]), info("h.0.mlp.c_fc.weight", [16, 4])], ms, unknownLayout("no config.json"))).toEqual([
      ["transformer.h.0.attn.c_attn", "h.0.attn.c_attn.weight", true],
      ["transformer.h.0.mlp.c_fc", "h.0.mlp.c_fc.weight", false],
    ]);
  });

  test("a module not under model. or transformer. is not matched by stripping a prefix", () => {
    // Cut by the length of "model." or "transformer." without checking the prefix, these would become "fc.weight".
    for (const p of ["abcde.fc", "abcdefghijk.fc"]) {
      expect(() => planWeightMerge([info("fc.weight", [5, 3])], [mod(p, 3, 5)], false, BASE)).toThrow(`${BASE}: the base weights lack ${p}.weight `);
    }
  });

  test("square weights follow the layout: a pattern, a boolean, or a refusal when unknown", () => {
    const ms = [mod("h.attn.c_proj", 4, 4), mod("h.mlp.up", 4, 4)];
    const base = [info("h.attn.c_proj.weight", [4, 4]), info("h.mlp.up.weight", [4, 4])];
    expect(plan(base, ms, patternLayout("c_proj", "--conv1d"))).toEqual([
      ["h.attn.c_proj", "h.attn.c_proj.weight", true],
      ["h.mlp.up", "h.mlp.up.weight", false],
    ]);
    expect(plan(base, ms, true).map((p) => p[2])).toEqual([true, true]);
    expect(plan(base, ms, false).map((p) => p[2])).toEqual([false, false]);
    expect(() => planWeightMerge(base, ms, unknownLayout("no config.json lies beside the base file"), BASE)).toThrow(
      new ConfigError(
        `${BASE}: h.attn.c_proj.weight is square [4, 4], so its shape cannot tell whether module h.attn.c_proj stores it (out, in) like nn.Linear ` +
          `or (in, out) like transformers' Conv1D, and no config.json lies beside the base file (an adapter's fan_in_fan_out cannot say: PEFT decides per layer). ` +
          "Refusing rather than risk a wrong weight: pass --conv1d <regex> naming the modules stored (in, out) like transformers' Conv1D " +
          "(e.g. --conv1d 'c_attn|c_proj|c_fc'), or --no-conv1d when every adapted layer is an nn.Linear, " +
          "or put the model's config.json (with its model_type) beside the base file",
      ),
    );
  });

  const m35 = () => [mod("fc", 3, 5)];
  itThrowsEach([
    [
      "missing keys are listed with the styles tried",
      () => planWeightMerge([info("fc.weight", [5, 3])], [mod("fc", 3, 5), mod("gc", 3, 5)], false, BASE),
      new RegExp(
        `^${BASE}: the base weights lack gc\\.weight \\(also tried the key styles base_model\\.model\\.<module>\\.weight, model\\.<module>\\.weight, ` +
          `<module without its model\\. prefix>\\.weight, <module without its transformer\\. prefix>\\.weight\\)$`,
      ),
      ConfigError,
    ],
    [
      "more than 12 missing keys are cut, with the count",
      () =>
        planWeightMerge(
          [],
          Array.from({ length: 13 }, (_, i) => mod(`l${String(i).padStart(2, "0")}`, 3, 5)),
          false,
          BASE,
        ),
      new RegExp(
        `^${BASE}: the base weights lack ${Array.from({ length: 12 }, (_, i) => `l${String(i).padStart(2, "0")}\\.weight`).join(", ")}, \\.\\.\\. \\(13 in all\\) \\(also tried`,
      ),
      ConfigError,
    ],
    [
      "exactly 12 missing keys are all listed",
      () =>
        planWeightMerge(
          [],
          Array.from({ length: 12 }, (_, i) => mod(`l${i}`, 3, 5)),
          false,
          BASE,
        ),
      /lack l0\.weight, .*, l11\.weight \(also tried/,
      ConfigError,
    ],
    [
      "an embedding weight of the wrong shape",
      () => planWeightMerge([info("emb.weight", [4, 7])], [mod("emb", 7, 4, "embedding")], false, BASE),
      /^base\.safetensors: emb\.weight has shape \[4, 7\], but the adapter for emb needs \[7, 4\]$/,
      ConfigError,
    ],
    [
      "a Linear weight fitting neither orientation (layout (out, in))",
      () => planWeightMerge([info("fc.weight", [5, 4])], m35(), false, BASE),
      /^base\.safetensors: fc\.weight has shape \[5, 4\], but the adapter for fc needs \[5, 3\]$/,
      ConfigError,
    ],
    [
      "a Linear weight fitting neither orientation (layout (in, out))",
      () => planWeightMerge([info("fc.weight", [5, 4])], m35(), true, BASE),
      /^base\.safetensors: fc\.weight has shape \[5, 4\], but the adapter for fc needs \[3, 5\]$/,
      ConfigError,
    ],
    ...[
      [4, 3],
      [4, 5],
      [3, 4],
    ].map((shape): ErrorCase => [
      `a Linear weight [${shape}] for (in 3, out 5), one dimension right`,
      () => planWeightMerge([info("fc.weight", shape)], m35(), false, BASE),
      new RegExp(`^base\\.safetensors: fc\\.weight has shape \\[${shape.join(", ")}\\], but the adapter for fc needs \\[5, 3\\]$`),
      ConfigError,
    ]),
    [
      "a 3-D weight whose first two dimensions fit",
      () => planWeightMerge([info("fc.weight", [5, 3, 1])], m35(), false, BASE),
      /fc\.weight has shape \[5, 3, 1\], but the adapter for fc needs \[5, 3\]$/,
      ConfigError,
    ],
    [
      "a 3-D weight whose first two dimensions fit transposed",
      () => planWeightMerge([info("fc.weight", [3, 5, 1])], m35(), true, BASE),
      /fc\.weight has shape \[3, 5, 1\], but the adapter for fc needs \[3, 5\]$/,
      ConfigError,
    ],
    [
      "an (out, in) weight that the layout says is (in, out)",
      () => planWeightMerge([info("fc.weight", [5, 3])], m35(), true, BASE),
      /^base\.safetensors: fc\.weight has shape \[5, 3\], which stores module fc \(out, in\) like nn\.Linear, but fan_in_fan_out = true says \(in, out\); check the base file and fan_in_fan_out = true$/,
      ConfigError,
    ],
    [
      "an (in, out) weight that the layout says is (out, in)",
      () => planWeightMerge([info("fc.weight", [3, 5])], m35(), patternLayout("nothing", "--conv1d"), BASE),
      /^base\.safetensors: fc\.weight has shape \[3, 5\], which stores module fc \(in, out\) like Conv1D, but --conv1d says \(out, in\); check the base file and --conv1d$/,
      ConfigError,
    ],
    [
      "a base weight of an unknown dtype",
      () => planWeightMerge([info("fc.weight", [5, 3], null)], m35(), false, BASE),
      /^base\.safetensors: fc\.weight has dtype unsupported; only floating weights can be merged$/,
      ConfigError,
    ],
    [
      "an integer base weight",
      () => planWeightMerge([info("fc.weight", [5, 3], "int32")], m35(), false, BASE),
      /^base\.safetensors: fc\.weight has dtype int32; only floating weights can be merged$/,
      ConfigError,
    ],
  ]);
});

describe("mergeWeights", () => {
  // Small integers and dyadic scales: every value below is exact in float16, float32 and float64.
  const W: M = [
    [1, 2, 3],
    [4, 5, 6],
  ];
  const A: M = [
    [1, -1, 2],
    [0, 3, 1],
  ];
  const Bm: M = [
    [2, 1],
    [-1, 1],
  ];
  const setup = (baseDtype: Dtype = "float32") => {
    const [fc] = describeOne(linearPair("fc", 2, 3, 2), { loraAlpha: 1 }); // s = 1/2
    const [conv] = describeOne(linearPair("conv", 2, 3, 2), { loraAlpha: 1 });
    const [emb] = describeOne([info(`${P}emb.lora_embedding_A`, [2, 3]), info(`${P}emb.lora_embedding_B`, [2, 2])], { loraAlpha: 1 });
    const base = {
      "fc.weight": t2(W, baseDtype),
      "conv.weight": t2(tr(W), baseDtype),
      "emb.weight": t2(tr(W), baseDtype),
      "fc.bias": tensor([1.5, -2], { dtype: baseDtype }),
      ids: tensor([7, 8], { dtype: "int64" }),
    };
    const adapter = {
      [fc.keyA]: t2(A),
      [fc.keyB]: t2(Bm),
      [conv.keyA]: t2(A),
      [conv.keyB]: t2(Bm),
      [emb.keyA]: t2(A),
      [emb.keyB]: t2(Bm),
    };
    const shapes = Object.entries(base).map(([k, t]) => info(k, t.shape, t.dtype));
    const plans = planWeightMerge(shapes, [fc, conv, emb], patternLayout("conv", "--conv1d"), "base");
    return { base, adapter, plans };
  };
  const BA = mm(Bm, A);
  const linear = addScaled(W, BA, 0.5);
  const transposed = addScaled(tr(W), tr(BA), 0.5);

  test("W + s·BA for Linear, W + s·(BA)ᵀ for Conv1D and Embedding, merged in place in the base dtype", () => {
    const { base, adapter, plans } = setup();
    const done: [number, number, string][] = [];
    const out = mergeWeights(base, adapter, plans, { onMerged: (i, n, p) => done.push([i, n, p.baseKey]) });
    expect(done).toEqual([
      [1, 3, "fc.weight"],
      [2, 3, "conv.weight"],
      [3, 3, "emb.weight"],
    ]);
    expect(Object.keys(out).sort()).toEqual(["conv.weight", "emb.weight", "fc.bias", "fc.weight", "ids"]);
    expect(out["fc.weight"].toList()).toEqual(linear);
    expect(out["conv.weight"].toList()).toEqual(transposed);
    expect(out["emb.weight"].toList()).toEqual(transposed);
    expect(out["fc.weight"].dtype).toBe("float32");
    expect(base["fc.weight"].toList()).toEqual(linear);
    expect(out["fc.weight"]).toBe(base["fc.weight"]);
    expect(out["fc.bias"]).toBe(base["fc.bias"]);
  });

  test("a float16 base without a cast is merged in place and stays float16", () => {
    const { base, adapter, plans } = setup("float16");
    const out = mergeWeights(base, adapter, plans);
    for (const k of ["fc.weight", "conv.weight", "emb.weight"]) expect(out[k]).toBe(base[k as keyof typeof base]);
    expect(out["fc.weight"].dtype).toBe("float16");
    expect(out["fc.weight"].toList()).toEqual(linear);
    expect(out["conv.weight"].toList()).toEqual(transposed);
  });

  test("a cast to float64 merges, then casts every other floating tensor, leaving integers", () => {
    const { base, adapter, plans } = setup("float16");
    const out = mergeWeights(base, adapter, plans, { dtype: "float64", safe: true });
    expect(out["fc.weight"].dtype).toBe("float64");
    expect(out["fc.weight"].toList()).toEqual(linear);
    expect(out["emb.weight"].toList()).toEqual(transposed);
    expect(out["fc.bias"].dtype).toBe("float64");
    expect(out["fc.bias"].toList()).toEqual([1.5, -2]);
    expect(out["ids"].dtype).toBe("int64");
    expect(out["ids"].toList()).toEqual([7, 8]);
    // The base keeps its dtype and values when the output is cast.
    expect(base["fc.weight"].dtype).toBe("float16");
    expect(base["fc.weight"].toList()).toEqual(W.flat());
  });

  /** A 1×1 Linear "fc" with weight `w` and delta A·B = `a` (B = 1, s = 1), merged to `dtype`. */
  function mergeScalar(w: number, wDtype: Dtype, a: number, dtype: Dtype): Tensor {
    const [m] = describeOne(linearPair("fc", 1, 1, 1), { r: 1, loraAlpha: 1 });
    const base = { "fc.weight": tensor([[w]], { dtype: wDtype }) };
    const adapter = { [m.keyA]: tensor([[a]], { dtype: "float32" }), [m.keyB]: tensor([[1]], { dtype: "float32" }) };
    return mergeWeights(base, adapter, planWeightMerge([info("fc.weight", [1, 1], wDtype)], [m], false, "base"), { dtype })["fc.weight"];
  }

  test("a cast to float64 merges in float64: 1 + 2⁻³⁰ is kept, where float32 would give 1", () => {
    const out = mergeScalar(1, "float32", 2 ** -30, "float64");
    expect(out.dtype).toBe("float64");
    expect(out.toList()).toEqual([1 + 2 ** -30]);
  });

  test("a float64 weight cast to float32 is merged in float64 and rounded once", () => {
    // 1 + 2⁻²⁴ is a tie in float32: cast first it goes to 1 (ties to even) and 2⁻⁴⁰ is lost;
    // merged in float64 first, 1 + 2⁻²⁴ + 2⁻⁴⁰ is above the tie and rounds to 1 + 2⁻²³.
    const out = mergeScalar(1 + 2 ** -24, "float64", 2 ** -40, "float32");
    expect(out.dtype).toBe("float32");
    expect(out.toList()).toEqual([1 + 2 ** -23]);
  });

  test("a cast of the output never casts the same tensor twice and keeps tensors already in the target dtype", () => {
    const { base, adapter, plans } = setup("float32");
    const out = mergeWeights(base, adapter, plans, { dtype: "float32" });
    expect(out["fc.bias"]).toBe(base["fc.bias"]);
    expect(out["fc.weight"].toList()).toEqual(linear);
  });

  test("safe refuses a merge that gives NaN or Inf, naming the tensor", () => {
    const { base, adapter, plans } = setup();
    adapter[plans[0].module.keyB] = t2([
      [Number.NaN, 0],
      [0, 0],
    ]);
    expect(() => mergeWeights(base, adapter, plans, { safe: true })).toThrow(
      new ConfigError("refused (--safe): fc.weight would hold NaN or Inf values after the merge"),
    );
  });

  test("without safe, the non-finite merge goes through", () => {
    const { base, adapter, plans } = setup();
    adapter[plans[0].module.keyB] = t2([
      [Number.POSITIVE_INFINITY, 0],
      [0, 0],
    ]);
    expect(mergeWeights(base, adapter, plans, {})["fc.weight"].allFinite()).toBe(false);
  });

  test("safe refuses a cast that overflows an untouched tensor, naming the cast", () => {
    const { base, adapter, plans } = setup();
    base["fc.bias"] = tensor([1e6, 0], { dtype: "float32" });
    expect(() => mergeWeights(base, adapter, plans, { dtype: "float16", safe: true })).toThrow(
      new ConfigError("refused (--safe): fc.bias would hold NaN or Inf values after the merge and the cast to float16"),
    );
  });

  test("a factor the kernel refuses is named with the module and base key", () => {
    const { base, adapter, plans } = setup();
    adapter[plans[0].module.keyA] = t2([[1, 2, 3, 4]]);
    let thrown: unknown;
    try {
      mergeWeights(base, adapter, plans);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as Error).message).toMatch(/^merging fc into fc\.weight failed: ./);
  });
});
