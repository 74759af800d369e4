#!/usr/bin/env bash
# The main job: set up, then stylize the shipped sample photos with two shipped styles into out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
S=adain/data/samples
.venv/bin/adain info
.venv/bin/adain stylize $S/content_*.jpg --style $S/style_wesnoth_httt_wizards.jpg -o out/wizards
.venv/bin/adain stylize $S/content_astronaut.jpg --style $S/style_wesnoth_httt_wizards.jpg \
  --style $S/style_freecol_portrait_hudson.jpg --weights 1 1 --alpha 0.8 -o out/astronaut_mix.png
echo "wrote out/wizards/*.png and out/astronaut_mix.png"
