#!/usr/bin/env bash
# Training side by side, eighth run of 2026-11-29 (after nmt.shared_grad and nmt.rnn_loop.TrainingRNN): the seventh
# run's script with its own work folder, its outputs copied here. Nothing else running:
#   bash docs/results/side_by_side_2026-11-29h/run.sh
HERE=$(cd "$(dirname "$0")" && pwd)
W=/tmp/peers_h bash "$HERE/../side_by_side_2026-11-29g/train.sh" && cp /tmp/peers_h/sbs/* "$HERE/"
