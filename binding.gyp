# node-gyp build of the torch-lora addon: the same native/*.cc sources as CMakeLists.txt,
# against the libtorch that scripts/lib/find-libtorch.js finds (printed by scripts/gyp-torch.js).
# Used by `npm run prebuild` (prebuildify) and by users without cmake. native/bench.cc (benchmark
# floors) is left out: only CMakeLists.txt's torch_lora_bench.node, loaded by bench/, has it. Offline, point node-gyp at
# the local Node headers: node-gyp rebuild --nodedir="$(dirname "$(dirname "$(readlink -f "$(which node)")")")"
{
  "targets": [
    {
      "target_name": "torch_lora",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('native').filter((f) => f.endsWith('.cc') && f !== 'bench.cc').map((f) => 'native/' + f).join(' ')\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/gyp-torch.js include-dirs)",
        "<!@(node scripts/dist-backends.js include-dirs)"
      ],
      "defines": [
        "<!(node scripts/gyp-torch.js napi-define)",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "<!(node scripts/gyp-torch.js abi-define)",
        "TORCH_LORA_BUILT_WITH=\"<!(node scripts/gyp-torch.js built-with)\"",
        "<!@(node scripts/dist-backends.js defines)"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2"],
      "libraries": ["<!@(node scripts/gyp-torch.js libraries)"],
      "ldflags": ["<!@(node scripts/gyp-torch.js ldflags)"]
    }
  ]
}
