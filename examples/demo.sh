#!/usr/bin/env bash
# The demo: a workspace over the sample corpus (Norvale Pumps), then searches that hit every format.
set -euo pipefail
cd "$(dirname "$0")/.."
EK=".venv/bin/expertkit"
WS="demo-workspace"
export HF_HUB_OFFLINE=1 COLUMNS="${COLUMNS:-120}"

$EK init "$WS"
$EK ingest examples/corpus --tag norvale -w "$WS"
$EK status -w "$WS"
for q in "What torque for the impeller nut?" \
         "price of the 45 mm mechanical seal kit" \
         "how long is the warranty on NV-400 pumps" \
         "bearing housing vent diameter" \
         "working length when fitting a new mechanical seal"; do
  echo
  echo "\$ expertkit search \"$q\" -k 3"
  $EK search "$q" -k 3 -w "$WS"
done
