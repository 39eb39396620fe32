#!/usr/bin/env bash
# The GPU work of the course in one prepared run, for a lent CUDA machine without
# internet (see grader/CHECKS.md, "What still needs a GPU"): the `full` grading profile's
# calibration (reference AlexNet and VGG16 and an LRN AlexNet, 3 seeds each, plus a
# defective model each) and the pipeline benchmark. Results are written to $OUT (default build/gpu_session).
#
# Preparation on the instructor machine, in the repository root (data/ is git-ignored):
#   mkdir -p data/gz && cp /usr/share/datasets/fashion-mnist/*.gz data/gz/
# Then on the GPU machine, with data/gz carried along:
#   bash scripts/gpu_session.sh [calibrate] [benchmark]      (default: both)
# About 8 minutes of calibration and 1 of benchmark on one H100 (estimated from
# docs/CALIBRATION.md: 7 AlexNet runs of 5 epochs, 4 VGG16 runs of 4 epochs).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-build/gpu_session}"
python="${PYTHON:-python3}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CNN_COURSE_PROFILE=full
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(calibrate benchmark)
for step in "${steps[@]}"; do
  case "$step" in calibrate|benchmark) ;; *)
    echo "unknown step '$step' (valid: calibrate, benchmark)"; exit 2 ;;
  esac
done

"$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
  "gpu_session.sh needs a CUDA GPU and none is visible")' || exit 2
"$python" -m cnn_course --gz-dir data/gz || exit 2
{ nvidia-smi -L; "$python" -c 'import torch; print("torch", torch.__version__)'; } \
  | tee "$out/machine.txt"

status=0
for step in "${steps[@]}"; do
  case "$step" in
    calibrate)
      timeout 510 "$python" -m cnn_grader.hidden_checks.calibrate --profile full \
        | tee "$out/calibration.md" || status=1 ;;
    benchmark)
      timeout 80 "$python" scripts/benchmark_pipeline.py --images 16384 --batch 256 \
        --workers 8 | tee "$out/benchmark.txt" || status=1 ;;
  esac
done
exit $status
