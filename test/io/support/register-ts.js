// Lets a plain `node` child process require the TypeScript sources under lib/ and test/
// (compiled on the fly, types stripped), so child-process tests exercise the same code as jest.
const fs = require("fs");
const ts = require("typescript");

require.extensions[".ts"] = function compileTs(module, filename) {
  const source = fs.readFileSync(filename, "utf8");
  const { outputText } = ts.transpileModule(source, {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  });
  module._compile(outputText, filename);
};
