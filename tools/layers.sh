#!/bin/sh
# tools/layers.sh — a lower layer never includes a header of a higher one (DESIGN.md).
# Layers, low to high: core/base < core/tensor, core/io < core/* < nodes, scripting < daemon.
# Only core/tensor/cuda/ includes CUDA headers; only scripting/ includes lua.h.
set -u
bad=0
check() { # dir, forbidden include prefixes...
    dir=$1; shift
    [ -d "$dir" ] || return 0
    for pat in "$@"; do
        hits=$(grep -rnE "#include +\"$pat" "$dir" --include='*.c' --include='*.h' --include='*.cu' 2>/dev/null)
        if [ -n "$hits" ]; then echo "layers: $dir must not include $pat:"; echo "$hits"; bad=1; fi
    done
}
check core/base "core/[a-z_]+\.h" "core/tensor/" "core/io/" "nodes/" "scripting/" "daemon/"
check core/tensor "core/[a-z_]+\.h" "core/io/" "nodes/" "scripting/" "daemon/"
check core/io "core/[a-z_]+\.h" "nodes/" "scripting/" "daemon/"
for f in core/*.c core/*.h; do
    [ -f "$f" ] || continue
    if grep -nE '#include +"(nodes|scripting|daemon)/' "$f"; then echo "layers: $f includes a higher layer"; bad=1; fi
done
check nodes "scripting/" "daemon/"
check scripting "daemon/"
cuda=$(grep -rlnE '#include +<(cuda|cublas|cudnn)' core nodes scripting daemon 2>/dev/null | grep -v '^core/tensor/cuda/')
[ -z "$cuda" ] || { echo "layers: CUDA headers outside core/tensor/cuda/: $cuda"; bad=1; }
lua=$(grep -rlnE '#include +[<"](lua|lauxlib|lualib)\.h' core nodes daemon 2>/dev/null)
[ -z "$lua" ] || { echo "layers: lua.h outside scripting/: $lua"; bad=1; }
[ $bad -eq 0 ] && echo "layers: clean"
exit $bad
