#!/usr/bin/env bash
# `make demo`: prepare the sample digits, train LeNet on embedded Spark with 2 ranks,
# then test it and print accuracy, the model, the features and a plot of the curves.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${COS_DEMO_DIR:-$PWD/work/demo}
SOLVER=${COS_DEMO_SOLVER:-data/demo_lenet_solver.prototxt}
MODEL=$OUT/lenet.caffemodel

"$PY" scripts/prepare_mnist.py
rm -rf "$OUT" && mkdir -p "$OUT"

echo "== training LeNet on 2 ranks (embedded Spark local[2]); log: $OUT/train.log"
bin/caffe-on-spark -train -features accuracy,loss -label label \
  -conf "$SOLVER" -model "file:$MODEL" -output "file:$OUT/features" \
  -clusterSize 2 -connection ethernet 2>&1 | tee "$OUT/train.log" | "$PY" scripts/progress.py

echo "== testing the model on the 1,000 held-out digits"
bin/caffe-on-spark -test -conf "$SOLVER" -model "file:$MODEL" \
  -output "file:$OUT/test_result.txt" -clusterSize 2 -connection ethernet >"$OUT/test.log" 2>&1 \
  || { tail -20 "$OUT/test.log" >&2; exit 1; }

PLOT="$OUT/training.png"
# A missing plot should not hide the accuracy; say why instead.
"$PY" scripts/plot_training.py "$OUT/train.log" "$PLOT" || PLOT="(not drawn, see above)"
ACCURACY=$(sed -n 's/^accuracy: //p' "$OUT/test_result.txt")
ACCURACY=$(LC_ALL=C printf '%.4f' "$ACCURACY")  # the result file keeps full precision
echo
echo "test accuracy: $ACCURACY"
echo "model:         $MODEL"
echo "features:      $OUT/features"
echo "test result:   $OUT/test_result.txt"
echo "training plot: $PLOT"
