// Child process of killed-adapter-save.test.ts: saves, over and over, one of three models into
// the same folder (sync and async in turn), each with an adapter "default" and one "second".
// Model k has lora_alpha 2(k+1) and every factor filled with k+1, so a folder that mixes files
// of two saves is detectable. Prints "ready" once saving starts; the parent SIGKILLs it at a
// random moment. With "--crash-between-renames" it instead kills itself at the exact moment
// the new folder is about to take the old one's name (after the old one moved aside).
// Arguments: <dist index.js> <adapter folder> [--crash-between-renames]
"use strict";
const fs = require("fs");

/** The plain model of the tests. */
function net(t) {
  class Net extends t.nn.Module {
    constructor() {
      super();
      this.emb = new t.nn.Embedding(64, 32);
      this.layers = new t.nn.ModuleList(Array.from({ length: 6 }, () => new t.nn.Linear(256, 256)));
    }
  }
  return new Net();
}

/** The adapted model: k picks alpha and the factors' value. */
function build(t, k) {
  const m = t.lora.injectAdapter(net(t), { targetModules: ["emb", "0", "1", "2", "3", "4", "5"], r: 16, loraAlpha: 2 * (k + 1) });
  m.addAdapter("second", { targetModules: ["0", "1"], r: 4, loraAlpha: 2 * (k + 1) });
  t.noGrad(() => {
    for (const [, layer] of m.loraLayers()) for (const name of layer.adapterNames) for (const f of layer.factors(name)) t.init.constant_(f, k + 1);
  });
  return m;
}

if (require.main === module) {
  const t = require(process.argv[2]);
  const dir = process.argv[3];
  const crashBetween = process.argv[4] === "--crash-between-renames";
  const models = [0, 1, 2].map((k) => build(t, k));
  if (crashBetween) {
    const rename = fs.renameSync;
    fs.renameSync = function renameThenMaybeDie(from, to) {
      if (/\.tmp-\d+-[0-9a-f]+$/.test(from) && fs.readdirSync(require("path").dirname(to)).some((n) => /\.old-\d+-/.test(n)))
        process.kill(process.pid, "SIGKILL");
      return rename.call(fs, from, to);
    };
    models[1].saveAdapter(dir);
  } else {
    process.stdout.write("ready\n");
    (async () => {
      for (let i = 0; ; i++) {
        const m = models[i % 3];
        if (i % 2 === 0) m.saveAdapter(dir);
        else await m.saveAdapterAsync(dir);
      }
    })();
  }
}

module.exports = { net, build };
