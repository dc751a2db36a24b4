/** @type {import('jest').Config} */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testTimeout: 120000,
  // The second prints the skipped tests by reason (test/helpers/skip.ts) and, with CI=true, fails on any but "no GPU".
  reporters: ["default", "<rootDir>/test/reporters/skip-summary.js"],
  transform: { "^.+\\.ts$": ["ts-jest", { tsconfig: require("path").join(__dirname, "tsconfig.json") }] },
};
