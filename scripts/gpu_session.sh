#!/usr/bin/env bash
# The GPU work of the course in one prepared run, for a lent CUDA machine without
# internet (see grader/CHECKS.md, "What still needs a GPU"): the `full` grading profile's
# calibration (reference AlexNet and VGG16 and an LRN AlexNet, 3 seeds each, plus a
# defective model each) and the pipeline benchmark. Results are written to $OUT (default build/gpu_session).
#
# Preparation on the instructor machine, in the repository root (data/ is git-ignored):
#   mkdir -p data/gz && cp /usr/share/datasets/fashion-mnist/*.gz data/gz/
# Then on the GPU machine, with data/gz carried along:
#   bash scripts/gpu_session.sh [STEP ...]      (default: every step, in this order)
# Steps, sized so that a 15-minute device lease can run them in two calls:
#   alexnet    calibration of AlexNet: 7 runs of 5 epochs (about 2.5 min on an H100)
#   share      1, 2 and 4 AlexNet trainings at once on one GPU (about 1 min)
#   benchmark  the course pipeline against the textbook one (about 1 min)
#   vgg16      calibration of VGG16: 4 runs of 4 epochs (about 7 min on an H100)
#   sandbox    the grader's sandbox sees no GPU while the host does (seconds)
# (estimated from docs/CALIBRATION.md's epoch times).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-build/gpu_session}"
python="${PYTHON:-python3}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CNN_COURSE_PROFILE=full
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(sandbox alexnet share benchmark vgg16)
for step in "${steps[@]}"; do
  case "$step" in alexnet|share|benchmark|vgg16|sandbox) ;; *)
    echo "unknown step '$step' (valid: alexnet, share, benchmark, vgg16, sandbox)"; exit 2 ;;
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
    alexnet|vgg16)
      timeout "${CALIBRATE_TIMEOUT:-510}" "$python" -m cnn_grader.hidden_checks.calibrate \
        --profile full --models "$step" | tee "$out/calibration-$step.md" || status=1 ;;
    share)
      timeout 150 "$python" scripts/benchmark_gpu_share.py --counts 1 2 4 \
        | tee "$out/share.txt" || status=1 ;;
    sandbox)
      timeout 60 "$python" scripts/check_sandbox_gpu.py | tee "$out/sandbox.txt" || status=1 ;;
    benchmark)
      timeout 80 "$python" scripts/benchmark_pipeline.py --images 16384 --batch 256 \
        --workers 8 | tee "$out/benchmark.txt" || status=1 ;;
  esac
done
exit $status
