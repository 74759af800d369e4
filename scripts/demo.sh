#!/usr/bin/env bash
# The main job: set up, build a small Blender scene (several objects and materials, a camera move, alpha keyed
# 0 -> 1) and render it stylized, headless, on the CPU with the shipped weights into out/demo/; then stylize the
# sample photos with the library's command line into out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_blender.sh
.venv/bin/adain info
.venv-bpy45/bin/python scripts/demo_blender.py --out out/demo --backend-python .venv/bin/python "$@"
S=adain/data/samples
.venv/bin/adain stylize $S/content_*.jpg --style $S/style_wesnoth_httt_wizards.jpg -o out/wizards
.venv/bin/adain stylize $S/content_astronaut.jpg --style $S/style_wesnoth_httt_wizards.jpg \
  --style $S/style_freecol_portrait_hudson.jpg --weights 1 1 --alpha 0.8 -o out/astronaut_mix.png
echo "wrote out/demo/frame_*.png (+ demo.blend), out/wizards/*.png and out/astronaut_mix.png"
