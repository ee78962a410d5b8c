#!/bin/sh
# tools/export_api.sh — writes the ComfyUI API-format twin of a Loom workflow: the graph
# `loom validate --json` resolves at the workflow's default parameters (sub-workflows
# inlined, parameters substituted), node ids renumbered 1..N in plan order (ComfyUI's
# kind of ids; the Loom id stays in each node's _meta.title, in brackets), pretty-printed
# with links on one line.
#   tools/export_api.sh workflows/sd3_img2img.yaml ...   writes workflows/sd3_img2img.api.json
# Validation needs the default model and input names to exist, so loom runs in a temporary
# directory whose models/ links the tiny checkpoints of $LOOM_SHARED/golden (default
# ../shared) under the names the shipped workflows use, and whose input/ holds input.png.
# A workflow naming other files needs them added to the list below.
# tests/cli/test_api_json.c checks that every twin resolves to the same plan as its YAML.
set -eu

LOOM=$(realpath "${LOOM_BIN:-build/loom}")
SHARED=$(realpath "${LOOM_SHARED:-../shared}")
[ -x "$LOOM" ] || { echo "export_api: $LOOM is not built; run make first" >&2; exit 1; }
[ -d "$SHARED/golden" ] || { echo "export_api: no $SHARED/golden; set LOOM_SHARED" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/models/checkpoints" "$work/models/text_encoders" "$work/input"
g=$SHARED/golden
ln -s "$g/sd3m_tiny.safetensors" "$work/models/checkpoints/sd3_medium_incl_clips_t5xxlfp8.safetensors"
ln -s "$g/split/sd35m/sd35m_tiny_noenc.safetensors" "$work/models/checkpoints/sd3.5_medium.safetensors"
ln -s "$g/split/sd35m/clip_l.safetensors" "$work/models/text_encoders/clip_l.safetensors"
ln -s "$g/split/sd35m/clip_g.safetensors" "$work/models/text_encoders/clip_g.safetensors"
ln -s "$g/split/sd35m/t5xxl_fp16.safetensors" "$work/models/text_encoders/t5xxl_fp16.safetensors"
ln -s "$SHARED/comfyui_examples/img2img_workflow.png" "$work/input/input.png"

for wf in "$@"; do
    out=${wf%.yaml}.api.json
    src=$(realpath "$wf")
    (cd "$work" && "$LOOM" validate --json "$src" --models models) | python3 -c '
import json, re, sys
prompt = json.load(sys.stdin)["prompt"]
ids = {old: str(i + 1) for i, old in enumerate(prompt)}
twin = {}
for old, node in prompt.items():
    for name, v in node["inputs"].items():
        if isinstance(v, list):
            node["inputs"][name] = [ids[v[0]], v[1]]
    node["_meta"] = {"title": "%s [%s]" % (node["_meta"]["title"], old)}
    twin[ids[old]] = node
text = json.dumps(twin, indent=2)
print(re.sub(r"\[\s+(\"[0-9]+\"),\s+([0-9]+)\s+\]", r"[\1, \2]", text))  # links on one line
' > "$out.tmp"
    mv "$out.tmp" "$out"
    echo "export_api: wrote $out"
done
