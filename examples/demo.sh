#!/usr/bin/env bash
# The demo: what this machine runs (expertkit doctor), then a workspace over the sample corpus
# (Norvale Pumps, invented facts in PDF, DOCX, CSV, Markdown and HTML), searches that hit each format,
# then three questions answered with verified citations by the default model (Qwen2.5-Coder-1.5B on a
# warm llama.cpp server): one from the CSV table, one from the PDF manual, one the documents cannot answer.
set -euo pipefail
cd "$(dirname "$0")/.."
EK=".venv/bin/expertkit"
WS="demo-workspace"
export HF_HUB_OFFLINE=1 COLUMNS="${COLUMNS:-120}"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say expertkit doctor
$EK doctor || true  # what runs on this machine and how fast; a ✗ names its fix and the demo goes on
say expertkit init "$WS"
$EK init "$WS"
say expertkit ingest examples/corpus --tag norvale -w "$WS"
$EK ingest examples/corpus --tag norvale -w "$WS"
say expertkit status -w "$WS"
$EK status -w "$WS"
for q in "price of the 45 mm mechanical seal kit" "What torque for the impeller nut?"; do
  say expertkit search "\"$q\"" -k 3 -w "$WS"
  $EK search "$q" -k 3 -w "$WS"
done
say expertkit runtime start -w "$WS"
$EK runtime start -w "$WS"
trap '$EK runtime stop -w "$WS" >/dev/null' EXIT
for q in "What is the price in euros of the seal kit NP-4472?" \
         "What torque is the impeller nut tightened to?" \
         "Who won the football world cup in 2018?"; do
  say expertkit ask "\"$q\"" -w "$WS"
  $EK ask "$q" -w "$WS"
done
say expertkit runtime stop -w "$WS"
$EK runtime stop -w "$WS"
say expertkit advise -w "$WS"
$EK advise -w "$WS"
echo
echo "Measure the routes on this corpus (trains two adapters, about 20 minutes on 2 cores):"
echo "  $EK advise --measure -w $WS"
echo "Serve it to a team (OpenAI's API and a web chat at http://127.0.0.1:8000/, one key per person or app):"
echo "  $EK keys add alice --group everyone -w $WS && $EK serve -w $WS"
