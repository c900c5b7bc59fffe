{
  "targets": [
    {
      "target_name": "pigg",
      "sources": [
        "native/binding/addon.cpp",
        "<!@(node -e \"console.log(require('fs').readdirSync('native').filter(f=>f.endsWith('.cpp')).map(f=>'native/'+f).join(' '))\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native",
        "native/third_party",
        "<!(node scripts/libtorch.mjs --field include)",
        "<!(node scripts/libtorch.mjs --field include)/torch/csrc/api/include"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-O3"],
      "libraries": [
        "-L<!(node scripts/libtorch.mjs --field lib)",
        "-Wl,-rpath,<!(node scripts/libtorch.mjs --field lib)",
        "-ltorch", "-ltorch_cpu", "-lc10"
      ]
    }
  ]
}
