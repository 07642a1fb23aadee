#!/usr/bin/env bash
# An ARM64 (aarch64) Python with edgetag's runtime, run under qemu-user on an x86-64 Debian machine.
#
#   bash benchmarks/arm64_emulation.sh DIR        # then: DIR/python -m edgetag.runtime.cli verify
#
# Builds DIR/sysroot (Debian bookworm's arm64 python3.11 and the libraries it needs, unpacked with
# dpkg -x, nothing installed), DIR/site (PyPI's manylinux aarch64 wheels of numpy and onnxruntime),
# DIR/pkg/edgetag (the C++ front end cross-compiled with g++-aarch64-linux-gnu, and a link to this
# checkout's Python folders) and DIR/python, a wrapper that runs it all under qemu-aarch64.
# Needs root for apt-get (qemu-user, g++-aarch64-linux-gnu, the arm64 architecture).
# onnxruntime 1.20.1, not the x86 pin: 1.32.0's aarch64 wheel crashes at import under qemu-user 7.2
# (SIGSEGV in its CPU detection); the int8 kernels in question are the same MLAS kernels.
set -euo pipefail
out=$(realpath -m "${1:?usage: arm64_emulation.sh DIR}")
repo=$(cd "$(dirname "$0")/.." && pwd)
ort_version=${ORT_AARCH64_VERSION:-1.20.1}
mkdir -p "$out/debs" "$out/sysroot" "$out/site" "$out/pkg/edgetag"

if ! dpkg --print-foreign-architectures | grep -qx arm64; then dpkg --add-architecture arm64; fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user g++-aarch64-linux-gnu
(cd "$out/debs" && apt-get download \
  python3.11-minimal:arm64 libpython3.11-minimal:arm64 libpython3.11-stdlib:arm64 libpython3.11-dev:arm64 \
  libc6:arm64 zlib1g:arm64 libexpat1:arm64 libffi8:arm64 libssl3:arm64 libbz2-1.0:arm64 liblzma5:arm64 \
  libgcc-s1:arm64 libstdc++6:arm64 libcrypt1:arm64 libuuid1:arm64 libsqlite3-0:arm64 libncursesw6:arm64 \
  libtinfo6:arm64 libreadline8:arm64 libnsl2:arm64 libtirpc3:arm64 libgssapi-krb5-2:arm64 libkrb5-3:arm64 \
  libk5crypto3:arm64 libcom-err2:arm64 libkrb5support0:arm64 libkeyutils1:arm64 libdb5.3:arm64 libgdbm6:arm64)
for deb in "$out"/debs/*.deb; do dpkg -x "$deb" "$out/sysroot"; done

python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 -d "$out/wheels" \
  "numpy==$(python3 -c 'import numpy; print(numpy.__version__)')" "onnxruntime==$ort_version" \
  protobuf flatbuffers packaging sympy mpmath coloredlogs humanfriendly
for wheel in "$out"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$out/site/"; done

# pybind11's headers from its (pure Python) wheel, at the version the build uses
python3 -m pip download -q --no-deps --only-binary=:all: -d "$out/wheels-build" "pybind11==$(sed -n 's/^pybind11==//p' "$repo/constraints.txt")"
python3 -m zipfile -e "$out"/wheels-build/pybind11-*.whl "$out/pybind11"
pybind="$out/pybind11/pybind11/include"
aarch64-linux-gnu-g++ -O3 -fno-math-errno -std=c++17 -shared -fPIC -fvisibility=hidden \
  -I "$repo/cpp_ext/include" -I "$pybind" -I "$out/sysroot/usr/include/python3.11" -I "$out/sysroot/usr/include" \
  "$repo"/cpp_ext/src/*.cc "$repo/cpp_ext/python/bindings.cc" \
  -o "$out/pkg/edgetag/_core.cpython-311-aarch64-linux-gnu.so"
for part in runtime training export benchmarks; do  # the CLI lists every part's commands (torch stays unimported)
  ln -sfn "$repo/$part" "$out/pkg/edgetag/$part"
done

cat > "$out/python" <<EOF
#!/usr/bin/env bash
# python3.11 for aarch64 under qemu-user, with edgetag's runtime (from $repo) importable
export PYTHONPATH="$out/pkg:$out/site\${PYTHONPATH:+:\$PYTHONPATH}"
exec qemu-aarch64 -L "$out/sysroot" "$out/sysroot/usr/bin/python3.11" "\$@"
EOF
chmod +x "$out/python"
"$out/python" -c 'import platform, onnxruntime, edgetag.runtime.frontend; print("ready:", platform.machine(), "onnxruntime", onnxruntime.__version__)'
